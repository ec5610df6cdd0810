/**
 * The job-event publisher's test hook: off unless FLO_TEST_JOB_EVENT_FAULTS names a rules file,
 * and then it drops, duplicates, delays or reorders exactly the final events its rules name, once
 * each, even across a restart of the host that publishes them.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { localJobEvent, type LocalJobEvent } from "../lib/compute/local/events";
import { floJobTags, type JobState } from "../lib/compute/siloCompute";
import { TEST_JOB_EVENT_FAULTS_SETTING, withTestJobEventHook, type JobEventFaultRule } from "../lib/federation/testJobEventHook";

const event = (silo: string, state: JobState, round = 1): LocalJobEvent => localJobEvent({ jobName: `flo-f-r${round}-${silo}`, state, tags: floJobTags({ federationId: "f", round, silo }) });

function recorder(): { sent: string[]; send: (e: LocalJobEvent) => Promise<void> } {
  const sent: string[] = [];
  return { sent, send: async (e) => void sent.push(`${e.tags.floSilo}:${e.state}`) };
}

function rulesFile(rules: JobEventFaultRule[], release: string[] = []): string {
  const file = join(mkdtempSync(join(tmpdir(), "flo-event-hook-")), "rules.json");
  writeFileSync(file, JSON.stringify({ rules, release }));
  return file;
}

const rule = (id: string, silo: string, action: JobEventFaultRule["action"]): JobEventFaultRule => ({ id, federation: "f", round: 1, silo, action });

it("is off unless its setting names a rules file: the publisher is returned as it is", async () => {
  const { sent, send } = recorder();
  expect(withTestJobEventHook(send, {})).toBe(send);
  expect(withTestJobEventHook(send, { [TEST_JOB_EVENT_FAULTS_SETTING]: "  " })).toBe(send);
  await withTestJobEventHook(send, {})(event("east", "completed"));
  expect(sent).toEqual(["east:completed"]);
});

it("drops, duplicates and reorders the named silos' final events, once, and logs what it did", async () => {
  const file = rulesFile([rule("lost", "east", "drop"), rule("twice", "west", "duplicate"), rule("swap", "north", "reorder")]);
  const { sent, send } = recorder();
  const publish = withTestJobEventHook(send, { [TEST_JOB_EVENT_FAULTS_SETTING]: file });
  for (const silo of ["east", "west", "north", "south"]) await publish(event(silo, "queued"));
  for (const silo of ["east", "west", "north", "south"]) await publish(event(silo, "completed"));
  // A second attempt's events of the same silos pass untouched: each rule applies once.
  await publish(event("east", "failed"));
  expect(sent).toEqual(["east:queued", "west:queued", "south:queued", "west:completed", "west:completed", "north:completed", "north:queued", "south:completed", "east:failed"]);
  const log = readFileSync(`${file}.log`, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { id: string; action: string });
  expect(log.map((l) => [l.id, l.action])).toEqual([
    ["lost", "drop"],
    ["twice", "duplicate"],
    ["swap", "reorder"],
  ]);

  // A restarted host (a new hook on the same file) does not apply them again.
  const again = recorder();
  const restarted = withTestJobEventHook(again.send, { [TEST_JOB_EVENT_FAULTS_SETTING]: file });
  await restarted(event("east", "completed"));
  expect(again.sent).toEqual(["east:completed"]);
});

it("holds a delayed final event until the rules file releases it", async () => {
  const file = rulesFile([rule("late", "east", "delay")]);
  const { sent, send } = recorder();
  const publish = withTestJobEventHook(send, { [TEST_JOB_EVENT_FAULTS_SETTING]: file });
  await publish(event("east", "completed"));
  await publish(event("west", "completed"));
  await new Promise((r) => setTimeout(r, 600));
  expect(sent).toEqual(["west:completed"]);
  writeFileSync(file, JSON.stringify({ rules: [rule("late", "east", "delay")], release: ["late"] }));
  const deadline = Date.now() + 3000;
  while (sent.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(sent).toEqual(["west:completed", "east:completed"]);
});
