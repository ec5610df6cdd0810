import { Command } from "commander";

/**
 * `flo` command line. Each subcommand lives in its own module under lib/cli/ and exports
 * `register(program)`; add one line below per command.
 */
export async function main(argv: string[]): Promise<void> {
  const program = new Command();
  program
    .name("flo")
    .description("Federated learning orchestrator for Azure (Azure Functions + Durable Functions), with an embedded local runtime")
    .showHelpAfterError();
  // subcommands: register(program) per module
  (await import("./aggregate")).register(program);
  (await import("./host")).register(program);
  (await import("./run")).register(program);
  (await import("./siloKeygen")).register(program);
  await program.parseAsync(argv);
}
