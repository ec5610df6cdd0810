import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { restartablePort } from "../lib/runtime/restartablePort";

describe("restartablePort", () => {
  test("is below the OS's ephemeral range, so no outgoing connection can take it while its process restarts", async () => {
    const ephemeralStart = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    const ports = await Promise.all(Array.from({ length: 20 }, () => restartablePort()));
    for (const port of ports) {
      expect(port).toBeGreaterThanOrEqual(10_000);
      expect(port).toBeLessThan(ephemeralStart);
    }
  });

  test("is free: a server can listen on it, close, and listen on it again", async () => {
    const port = await restartablePort();
    for (let i = 0; i < 2; i++) {
      const server = createServer();
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, "127.0.0.1", resolve);
      });
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
