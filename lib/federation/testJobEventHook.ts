/**
 * A test hook on the job-event publisher: with the setting FLO_TEST_JOB_EVENT_FAULTS naming a rules
 * file (unset by default: events are sent untouched), every job event this app publishes is first
 * matched against the file's rules, so the fault-injection campaign can lose, duplicate, delay or
 * reorder chosen events deterministically instead of racing the host's queue receiver.
 *
 * Rules file (JSON, re-read on every publish, so a harness may rewrite it at any time):
 *   {"rules": [{"id": "r1", "federation": "f", "round": 2, "silo": "east", "action": "drop"}],
 *    "release": ["r1"]}
 * A rule matches the job's final event (completed, failed, canceled) of that federation, round and
 * silo, once. Actions: `drop` (never sent), `duplicate` (sent twice, same message id), `delay`
 * (held until the rule's id is listed in `release`, or MAX_HOLD_MS passed), `reorder` (the job's
 * `queued` event is held back and sent after its final event, so the two arrive out of order).
 * Each applied action is appended to `<rules file>.log` as a JSON line {id, action, eventId}.
 */
import { appendFileSync, readFileSync } from "node:fs";
import { FLO_TAGS, TERMINAL_JOB_STATES, type JobState } from "../compute/siloCompute";

export const TEST_JOB_EVENT_FAULTS_SETTING = "FLO_TEST_JOB_EVENT_FAULTS";

export const JOB_EVENT_FAULT_ACTIONS = ["drop", "duplicate", "delay", "reorder"] as const;
export type JobEventFaultAction = (typeof JOB_EVENT_FAULT_ACTIONS)[number];

export interface JobEventFaultRule {
  id: string;
  federation: string;
  round: number;
  silo: string;
  action: JobEventFaultAction;
}

export interface JobEventFaultsFile {
  rules: JobEventFaultRule[];
  /** Ids of `delay` rules whose held event may now be sent. */
  release?: string[];
}

/** What the hook did, one JSON line per applied rule in `<rules file>.log`. */
export interface AppliedJobEventFault {
  id: string;
  action: JobEventFaultAction;
  eventId: string;
}

/** A held event is sent at the latest this long after it was published (a harness that never releases it). */
const MAX_HOLD_MS = 60_000;
/** How often held events look for their release. */
const RELEASE_POLL_MS = 200;

type Send<E> = (event: E) => Promise<void>;

interface EventView {
  id: string;
  state?: JobState;
  federation?: string;
  round?: number;
  silo?: string;
}

function view(event: { id: string }): EventView {
  const { state, tags } = event as { state?: unknown; tags?: unknown };
  const tagMap = typeof tags === "object" && tags !== null ? (tags as Record<string, unknown>) : {};
  const text = (key: string) => (typeof tagMap[key] === "string" ? tagMap[key] : undefined);
  const round = Number(text(FLO_TAGS.round));
  return {
    id: event.id,
    state: typeof state === "string" ? (state as JobState) : undefined,
    federation: text(FLO_TAGS.federation),
    round: Number.isInteger(round) ? round : undefined,
    silo: text(FLO_TAGS.silo),
  };
}

/** The publisher itself when the setting is unset; otherwise the publisher behind the rules file it names. */
export function withTestJobEventHook<E extends { id: string }>(send: Send<E>, settings: Readonly<Record<string, string | undefined>>): Send<E> {
  const rulesFile = settings[TEST_JOB_EVENT_FAULTS_SETTING]?.trim();
  if (!rulesFile) return send;
  return new JobEventFaultHook(send, rulesFile).publish;
}

class JobEventFaultHook<E extends { id: string }> {
  /** Rules already applied (each applies once). */
  private readonly applied = new Set<string>();
  /** `queued` events held by a `reorder` rule, by rule id. */
  private readonly heldQueued = new Map<string, E>();

  constructor(
    private readonly send: Send<E>,
    private readonly rulesFile: string,
  ) {
    // A restarted host must not apply a rule again: the log says which ones were.
    for (const line of readText(`${rulesFile}.log`).split("\n")) {
      try {
        this.applied.add((JSON.parse(line) as AppliedJobEventFault).id);
      } catch {
        // blank or partly written line
      }
    }
  }

  readonly publish = async (event: E): Promise<void> => {
    const seen = view(event);
    const rules = this.readRules().rules;
    const sameJob = (r: JobEventFaultRule) => r.federation === seen.federation && r.round === seen.round && r.silo === seen.silo && !this.applied.has(r.id);
    if (seen.state === "queued") {
      const reorder = rules.find((r) => r.action === "reorder" && sameJob(r));
      if (reorder && !this.heldQueued.has(reorder.id)) {
        this.heldQueued.set(reorder.id, event);
        return;
      }
      return this.send(event);
    }
    const rule = seen.state !== undefined && TERMINAL_JOB_STATES.includes(seen.state) ? rules.find(sameJob) : undefined;
    if (!rule) return this.send(event);
    this.applied.add(rule.id);
    this.record({ id: rule.id, action: rule.action, eventId: event.id });
    switch (rule.action) {
      case "drop":
        return;
      case "duplicate":
        await this.send(event);
        return this.send(event);
      case "reorder": {
        await this.send(event);
        const queued = this.heldQueued.get(rule.id);
        this.heldQueued.delete(rule.id);
        if (queued) await this.send(queued);
        return;
      }
      case "delay":
        // Not awaited: the job's finishing goes on, as when a broker delivers late.
        void this.sendWhenReleased(rule.id, event);
        return;
    }
  };

  private async sendWhenReleased(ruleId: string, event: E): Promise<void> {
    const until = Date.now() + MAX_HOLD_MS;
    while (Date.now() < until && !(this.readRules().release ?? []).includes(ruleId)) await new Promise((r) => setTimeout(r, RELEASE_POLL_MS));
    await this.send(event).catch(() => undefined);
  }

  private readRules(): JobEventFaultsFile {
    try {
      const parsed = JSON.parse(readText(this.rulesFile)) as Partial<JobEventFaultsFile>;
      return { rules: Array.isArray(parsed.rules) ? parsed.rules : [], release: Array.isArray(parsed.release) ? parsed.release : [] };
    } catch {
      // No file yet, or one being rewritten: no rules apply to this event.
      return { rules: [] };
    }
  }

  private record(applied: AppliedJobEventFault): void {
    try {
      appendFileSync(`${this.rulesFile}.log`, `${JSON.stringify(applied)}\n`);
    } catch {
      // The record is for the harness; the event's fate does not depend on it.
    }
  }
}

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}
