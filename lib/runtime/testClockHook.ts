/**
 * A test hook that moves the host's clock: with the setting FLO_TEST_CLOCK_HOOK=enabled (off by
 * default) the host serves `POST /runtime/webhooks/flo-test/clock` with body `{"jumpSeconds": n}`
 * behind the master key, and from then on every time the host reads (durable timers, orchestration
 * timestamps) is shifted by the sum of the jumps. The fault-injection campaign uses it to jump the
 * clock under a running federation; without the setting the route does not exist (404).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { isKeyAccepted } from "./triggers/http/requestGuard";
import type { MountedHandler } from "./triggers/http/frontDoor";

export const TEST_CLOCK_HOOK_SETTING = "FLO_TEST_CLOCK_HOOK";
export const TEST_CLOCK_ROUTE = "/runtime/webhooks/flo-test/clock";
/** Bodies of the hook are tiny; refuse anything larger. */
const MAX_BODY_BYTES = 1024;

/** The shift the host's real clock applies (ms); only the hook changes it. */
export interface ClockOffset {
  ms: number;
}

export function testClockHookEnabled(settings: Record<string, string | undefined>): boolean {
  return settings[TEST_CLOCK_HOOK_SETTING]?.trim().toLowerCase() === "enabled";
}

function send(res: ServerResponse, status: number, body: unknown): true {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
  return true;
}

async function readBody(req: IncomingMessage): Promise<string | undefined> {
  let text = "";
  for await (const chunk of req) {
    text += (chunk as Buffer).toString();
    if (text.length > MAX_BODY_BYTES) return undefined;
  }
  return text;
}

/** The hook's handler, mounted at TEST_CLOCK_ROUTE; answers 200 {"offsetSeconds": total}. */
export function testClockHandler(offset: ClockOffset, masterKey: string): MountedHandler {
  return async (req, res, url) => {
    if (url.pathname.toLowerCase() !== TEST_CLOCK_ROUTE) return false;
    if (!isKeyAccepted(req, url, [masterKey])) return send(res, 401, { error: "the clock hook requires the host's master key" });
    if ((req.method ?? "GET").toUpperCase() !== "POST") return send(res, 405, { error: `expected POST, got ${req.method}` });
    const text = await readBody(req);
    if (text === undefined) return send(res, 413, { error: `body: expected at most ${MAX_BODY_BYTES} bytes` });
    let jump: unknown;
    try {
      jump = (JSON.parse(text) as { jumpSeconds?: unknown }).jumpSeconds;
    } catch {
      return send(res, 400, { error: `body: expected JSON {"jumpSeconds": <number>}, got ${JSON.stringify(text.slice(0, 80))}` });
    }
    if (typeof jump !== "number" || !Number.isFinite(jump)) return send(res, 400, { error: `jumpSeconds: expected a finite number, got ${JSON.stringify(jump ?? null)}` });
    offset.ms += jump * 1000;
    return send(res, 200, { offsetSeconds: offset.ms / 1000 });
  };
}
