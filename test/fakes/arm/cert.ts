/**
 * A self-signed TLS certificate for 127.0.0.1/localhost, generated with openssl at test time (Node 20
 * has no X.509 generator). Clients trust it through `tlsOptions: {ca}` only; nothing is installed.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestCertificate {
  /** PEM certificate: serve it, and pass it as `ca` to clients. */
  cert: string;
  /** PEM private key (unencrypted). */
  key: string;
  /** Files holding the same PEMs (for servers that take paths, e.g. Azurite). Removed by `dispose`. */
  certPath: string;
  keyPath: string;
  dispose(): void;
}

/** Generates a fresh key pair + certificate (about 100 ms with RSA 2048). */
export function generateTestCertificate(): TestCertificate {
  const dir = mkdtempSync(join(tmpdir(), "flo-test-cert-"));
  const keyPath = join(dir, "key.pem");
  const certPath = join(dir, "cert.pem");
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", keyPath, "-out", certPath, "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  return {
    cert: readFileSync(certPath, "utf8"),
    key: readFileSync(keyPath, "utf8"),
    certPath,
    keyPath,
    dispose: () => rmSync(dir, { recursive: true, force: true }),
  };
}
