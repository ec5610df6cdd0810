import { readFileSync } from "node:fs";
import { createServer } from "node:net";

/**
 * A free loopback port that a process can be killed and restarted on (tests, the chaos campaign).
 *
 * `listen(0)` hands out a port from the OS's ephemeral range, the range outgoing connections take
 * their source ports from. Once the process listening on it dies, any connection on the machine
 * (say, an SDK client to Azurite) may get that port as its source port, and a restart on it then
 * fails with EADDRINUSE for as long as that connection lives. So the port is picked below the
 * ephemeral range (Linux: /proc/sys/net/ipv4/ip_local_port_range), where the OS never auto-binds.
 */
export async function restartablePort(options: { host?: string } = {}): Promise<number> {
  const host = options.host ?? "127.0.0.1";
  const ephemeralStart = ephemeralRangeStart();
  const low = 10_000;
  if (ephemeralStart === undefined || ephemeralStart - low < 1000) return listenOnce(0, host);
  for (let attempt = 0; attempt < 50; attempt++) {
    const candidate = low + Math.floor(Math.random() * (ephemeralStart - low));
    const port = await listenOnce(candidate, host).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "EADDRINUSE" || err.code === "EACCES") return undefined;
      throw err;
    });
    if (port !== undefined) return port;
  }
  throw new Error(`no free port in ${low}-${ephemeralStart - 1} after 50 attempts`);
}

function ephemeralRangeStart(): number | undefined {
  try {
    const start = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    return Number.isSafeInteger(start) && start > 0 ? start : undefined;
  } catch {
    return undefined; // not Linux: fall back to the OS's choice
  }
}

function listenOnce(port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(port, host, () => {
      const address = server.address();
      const bound = typeof address === "object" && address ? address.port : port;
      server.close(() => resolve(bound));
    });
  });
}
