import { Command } from "commander";

/**
 * `flo` command line. Each subcommand lives in its own module under lib/cli/ and exports
 * `register(command)`, which adds its arguments, options and action to the command created here from
 * this table. A module loads only when its command runs (or its help is asked for): `flo --help`
 * lists the table without loading any of them. Add one line per command.
 */
const COMMANDS: readonly { name: string; summary: string; load: () => Promise<{ register(command: Command): void }> }[] = [
  { name: "aggregate", summary: "Aggregate silo updates (dirs with model.safetensors + metrics.json) into one model, streaming", load: () => import("./aggregate") },
  { name: "host", summary: "Run a Functions v4 + Durable Functions app on the embedded local host (Azurite storage, HTTP, timers, Service Bus)", load: () => import("./host") },
  { name: "silo", summary: "Silo-side commands: keygen (a silo's key pair for secure aggregation)", load: () => import("./siloKeygen") },
  {
    name: "check",
    summary: "Preflight a federation spec: validate it, then check each Azure ML silo's workspace, compute, assets and exchange access (--offline: spec only)",
    load: () => import("./check"),
  },
  {
    name: "submit",
    summary: "Start a federation on a flo app's HTTP API, uploading the spec's training.code folder for Azure ML silos first (--dry-run: preflight only)",
    load: () => import("./submit"),
  },
  { name: "run", summary: "Run a federation end to end on this machine (embedded runtime, local silos) and write model, manifests and report", load: () => import("./run") },
];

export async function main(argv: string[]): Promise<void> {
  const program = new Command();
  program.name("flo").description("Federated learning orchestrator for Azure (Azure Functions + Durable Functions), with an embedded local runtime").showHelpAfterError();
  const requested = argv.slice(2).find((arg) => !arg.startsWith("-"));
  for (const entry of COMMANDS) {
    const command = program.command(entry.name).description(entry.summary);
    if (entry.name === requested) (await entry.load()).register(command);
  }
  await program.parseAsync(argv);
}
