// Orchestrations exercising the host-side semantics, written only against the public
// durable-functions v3 API. `control` is flipped by tests (e.g. to simulate a code change).
const df = require("durable-functions");

const control = { variant: "noop", flakyFailures: new Map() };
module.exports = { control };

df.app.activity("noop", { handler: () => 42 });
df.app.activity("echo", { handler: (input) => input });
df.app.activity("double", { handler: (n) => n * 2 });
df.app.activity("fails", {
  handler: (input) => {
    throw new Error(`boom ${input}`);
  },
});
df.app.activity("alwaysFails", {
  handler: () => {
    throw new Error("permanent");
  },
});
df.app.activity("flaky", {
  handler: (key) => {
    const left = control.flakyFailures.get(key) ?? 0;
    if (left > 0) {
      control.flakyFailures.set(key, left - 1);
      throw new Error(`flaky ${key} (${left} failures left)`);
    }
    return `ok ${key}`;
  },
});

df.app.orchestration("chain", function* (context) {
  const a = yield context.df.callActivity("double", context.df.getInput());
  const b = yield context.df.callActivity("double", a);
  return { a, b };
});

df.app.orchestration("fanOut", function* (context) {
  const n = context.df.getInput();
  const tasks = [];
  for (let i = 0; i < n; i++) tasks.push(context.df.callActivity("double", i));
  const results = yield context.df.Task.all(tasks);
  return results.reduce((s, x) => s + x, 0);
});

df.app.orchestration("inputKinds", function* (context) {
  return yield context.df.Task.all([context.df.callActivity("echo", "abc"), context.df.callActivity("echo", "123"), context.df.callActivity("echo", 7), context.df.callActivity("echo", { k: "v" })]);
});

df.app.orchestration("sleeper", function* (context) {
  const seconds = context.df.getInput();
  yield context.df.createTimer(new Date(context.df.currentUtcDateTime.getTime() + seconds * 1000));
  return `slept ${seconds}`;
});

df.app.orchestration("allNotFailFast", function* (context) {
  try {
    yield context.df.Task.all([context.df.callActivity("fails", "x"), context.df.callSubOrchestrator("sleeper", 60, "sleeper-child")]);
    return "no error";
  } catch (err) {
    const after = yield context.df.callActivity("echo", "after");
    return `caught (${after}): ${err.message}`;
  }
});

// Azure/azure-functions-durable-js#574: the same timer re-yielded in a new Task.any every iteration.
df.app.orchestration("timerReusedInAnyLoop", function* (context) {
  const deadline = context.df.createTimer(new Date(context.df.currentUtcDateTime.getTime() + 3600_000));
  let pending = ["a", "b", "c"].map((n) => context.df.waitForExternalEvent(`ack-${n}`));
  let got = 0;
  while (pending.length > 0) {
    const winner = yield context.df.Task.any([...pending, deadline]);
    if (winner === deadline) break;
    got++;
    pending = pending.filter((t) => t !== winner);
  }
  const after = yield context.df.callActivity("noop");
  return { got, after };
});

// The safe form: one compound task yielded once, the timer cancelled when the events win.
df.app.orchestration("quorumSafe", function* (context) {
  const deadline = context.df.createTimer(new Date(context.df.currentUtcDateTime.getTime() + 3600_000));
  const events = ["a", "b", "c"].map((n) => context.df.waitForExternalEvent(`ack-${n}`));
  const all = context.df.Task.all(events);
  const winner = yield context.df.Task.any([all, deadline]);
  if (winner === all) deadline.cancel();
  const after = yield context.df.callActivity("noop");
  return { got: winner === all ? 3 : 0, after };
});

df.app.orchestration("eventOrTimer", function* (context) {
  const { cancel } = context.df.getInput() ?? {};
  const deadline = context.df.createTimer(new Date(context.df.currentUtcDateTime.getTime() + 3600_000));
  const event = context.df.waitForExternalEvent("go");
  const winner = yield context.df.Task.any([event, deadline]);
  if (winner === event && cancel) deadline.cancel();
  return winner === event ? `event ${event.result}` : "timeout";
});

df.app.orchestration("rounds", function* (context) {
  const { round } = context.df.getInput();
  if (round === 1) {
    const go = yield context.df.waitForExternalEvent("go1");
    context.df.continueAsNew({ round: 2, go });
    return undefined;
  }
  const deadline = context.df.createTimer(new Date(context.df.currentUtcDateTime.getTime() + 60_000));
  const event = context.df.waitForExternalEvent("go2");
  const winner = yield context.df.Task.any([event, deadline]);
  if (winner === event) deadline.cancel();
  return winner === event ? `round 2 got ${event.result}` : "round 2 timed out";
});

df.app.orchestration("retryExhausted", function* (context) {
  return yield context.df.callActivityWithRetry("alwaysFails", new df.RetryOptions(1000, 3), "x");
});

df.app.orchestration("retryFlaky", function* (context) {
  const options = new df.RetryOptions(1000, 5);
  options.backoffCoefficient = 2;
  options.maxRetryIntervalInMilliseconds = 3000;
  const result = yield context.df.callActivityWithRetry("flaky", options, context.df.getInput());
  const after = yield context.df.callActivity("noop");
  return { result, after };
});

df.app.orchestration("subRetry", function* (context) {
  return yield context.df.callSubOrchestratorWithRetry("retryExhausted", new df.RetryOptions(500, 2), undefined, "retry-child");
});

df.app.orchestration("longTimer", function* (context) {
  yield context.df.createTimer(new Date(context.df.currentUtcDateTime.getTime() + 10 * 24 * 3600_000));
  return "woke";
});

df.app.orchestration("codeChanges", function* (context) {
  yield context.df.callActivity(control.variant);
  yield context.df.waitForExternalEvent("go");
  return "done";
});

df.app.orchestration("unknownActivity", function* (context) {
  return yield context.df.callActivity("doesNotExist");
});

df.app.orchestration("throws", function* (context) {
  yield context.df.callActivity("noop");
  throw new Error("orchestrator bug");
});

df.app.orchestration("child", function* (context) {
  const input = context.df.getInput();
  const doubled = yield context.df.callActivity("double", input.n);
  return { from: context.df.instanceId, doubled, parent: context.df.parentInstanceId };
});

df.app.orchestration("parent", function* (context) {
  const explicit = yield context.df.callSubOrchestrator("child", { n: 5 }, "explicit-child");
  const byDefault = yield context.df.callSubOrchestrator("child", { n: 7 });
  return { explicit, byDefault };
});

df.app.orchestration("waitsForever", function* (context) {
  context.df.setCustomStatus({ stage: "waiting" });
  return yield context.df.waitForExternalEvent("never");
});

df.app.orchestration("twoEvents", function* (context) {
  const first = yield context.df.waitForExternalEvent("x");
  const second = yield context.df.waitForExternalEvent("x");
  return [first, second];
});

df.app.orchestration("twoWaitersOneName", function* (context) {
  return yield context.df.Task.all([context.df.waitForExternalEvent("y"), context.df.waitForExternalEvent("y")]);
});

df.app.orchestration("usesEntity", function* (context) {
  const entityId = new df.EntityId("counter", "k");
  return yield context.df.callEntity(entityId, "add", 1);
});

// Sequential chain of n no-op activities (bench: replay cost versus history size).
df.app.orchestration("chainN", function* (context) {
  const n = context.df.getInput();
  let sum = 0;
  for (let i = 0; i < n; i++) sum += yield context.df.callActivity("noop");
  return sum;
});

// Records how many activity invocations overlap (bench of the concurrency bound).
control.concurrency = { running: 0, max: 0 };
df.app.activity("overlapProbe", {
  handler: async () => {
    const c = control.concurrency;
    c.running++;
    c.max = Math.max(c.max, c.running);
    await new Promise((resolve) => setTimeout(resolve, 5));
    c.running--;
    return 1;
  },
});

df.app.orchestration("probeFanOut", function* (context) {
  const n = context.df.getInput();
  const results = yield context.df.Task.all(Array.from({ length: n }, () => context.df.callActivity("overlapProbe")));
  return results.length;
});

df.app.orchestration("parentOfWaiter", function* (context) {
  try {
    return yield context.df.callSubOrchestrator("waitsForever", undefined, "waiter-child");
  } catch (err) {
    return `child failed: ${err.message}`;
  }
});

// continueAsNew loop: one activity per execution, then "done".
df.app.orchestration("countdown", function* (context) {
  const n = context.df.getInput();
  if (n <= 0) return "done";
  yield context.df.callActivity("noop");
  context.df.continueAsNew(n - 1);
  return undefined;
});

// Round 1 leaves a cancelled 1 h timer behind and continues as new; round 2 waits 2 h.
df.app.orchestration("staleTimer", function* (context) {
  const round = context.df.getInput() ?? 1;
  if (round === 1) {
    const timer = context.df.createTimer(new Date(context.df.currentUtcDateTime.getTime() + 3600_000));
    const go = context.df.waitForExternalEvent("go");
    const winner = yield context.df.Task.any([go, timer]);
    if (winner === go) timer.cancel();
    context.df.continueAsNew(2);
    return undefined;
  }
  const startedAt = context.df.currentUtcDateTime.getTime();
  yield context.df.createTimer(new Date(startedAt + 2 * 3600_000));
  return `round 2 waited ${(context.df.currentUtcDateTime.getTime() - startedAt) / 3600_000} h`;
});

df.app.orchestration("unknownSub", function* (context) {
  return yield context.df.callSubOrchestrator("noSuchOrchestrator", 1);
});

// continueAsNew with a string input (the SDK pre-stringifies strings).
// eslint-disable-next-line require-yield -- the SDK requires a generator even for an orchestrator that never yields
df.app.orchestration("canString", function* (context) {
  const input = context.df.getInput();
  if (input === null || input === undefined) {
    context.df.continueAsNew("abc");
    return undefined;
  }
  return { input };
});

// The reference example for the extension's event ids: fan-out, a retried activity, a cancelled deadline over events, then an activity.
df.app.orchestration("flShaped", function* (context) {
  const silos = ["a", "b", "c"];
  const updates = yield context.df.Task.all(silos.map((s) => context.df.callActivity("echo", s)));
  const aggregated = yield context.df.callActivityWithRetry("flaky", new df.RetryOptions(5000, 3), context.df.getInput());
  const deadline = context.df.createTimer(new Date(context.df.currentUtcDateTime.getTime() + 3600_000));
  const acks = context.df.Task.all(silos.map((s) => context.df.waitForExternalEvent(`ack-${s}`)));
  const winner = yield context.df.Task.any([acks, deadline]);
  if (winner === acks) deadline.cancel();
  const after = yield context.df.callActivity("noop");
  return { updates, aggregated, acks: winner === acks ? acks.result : null, after };
});
