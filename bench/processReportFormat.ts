import { readFileSync } from "node:fs";

/** The line `processReport.ts` writes to stderr at exit: this marker, then JSON. */
export const PROCESS_REPORT_MARKER = "FLO_BENCH_PROCESS ";

export interface ProcessReport {
  /** Peak RSS of the process image (VmHWM). */
  maxrss_kb: number;
  /** CPU time of every thread of the process, user + system. */
  cpu_s: number;
}

/** The report in a timed process's stderr, or undefined when it wrote none. */
export function parseProcessReport(stderr: string): ProcessReport | undefined {
  const at = stderr.lastIndexOf(PROCESS_REPORT_MARKER);
  if (at < 0) return undefined;
  return JSON.parse(stderr.slice(at + PROCESS_REPORT_MARKER.length).split("\n")[0]) as ProcessReport;
}

/**
 * Peak RSS of this process in kB. Linux keeps getrusage's ru_maxrss across execve, so a child
 * spawned by a big parent would report the parent's size; VmHWM in /proc/self/status belongs to
 * this process image only.
 */
export function peakRssKb(): number {
  try {
    const match = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync("/proc/self/status", "utf8"));
    if (match) return Number(match[1]);
  } catch {
    // not Linux: fall back below
  }
  return process.resourceUsage().maxRSS;
}
