/**
 * Entry point of the fraud trainer (`node train.js ...`; the train.js shim next to the spec loads
 * the compiled version of this file). The logic lives in trainer.ts, which tests import directly.
 */
import { main } from "./trainer";

export { main };

if (require.main === module) {
  void main().then((code) => (process.exitCode = code));
}
