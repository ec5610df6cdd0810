/**
 * Where the Python silo package `flo_secagg` lives in this installation (it ships inside the code
 * folder of secure Azure ML jobs). The package is source, not compiled: from dist/ it is found in
 * the source tree next to it.
 */
import { existsSync, readdirSync } from "node:fs";
import * as path from "node:path";

export const SECAGG_PYTHON_PACKAGE = "flo_secagg";

export function secaggPythonPackageDir(): string {
  const candidates = [path.join(__dirname, "python", SECAGG_PYTHON_PACKAGE), path.join(__dirname, "..", "..", "..", "lib", "secagg", "python", SECAGG_PYTHON_PACKAGE)];
  const found = candidates.find((dir) => existsSync(path.join(dir, "__main__.py")));
  if (!found) throw new Error(`the Python package ${SECAGG_PYTHON_PACKAGE} is missing from this installation (looked in ${candidates.join(", ")})`);
  return found;
}

/** The package's files (its .py modules, never caches), relative to the package folder. */
export function secaggPythonPackageFiles(): { dir: string; files: string[] } {
  const dir = secaggPythonPackageDir();
  return {
    dir,
    files: readdirSync(dir)
      .filter((name) => name.endsWith(".py"))
      .sort(),
  };
}
