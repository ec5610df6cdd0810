/**
 * Preloaded (`node --require`) into a process the benchmark times as a whole: at exit it writes the
 * process's peak RSS and CPU time (all threads) to stderr as one marked JSON line, so the process
 * runs exactly as a user starts it, with nothing else added.
 */

import { writeSync } from "node:fs";
import { peakRssKb, PROCESS_REPORT_MARKER, type ProcessReport } from "./processReportFormat";

process.on("exit", () => {
  const cpu = process.cpuUsage();
  const report: ProcessReport = { maxrss_kb: peakRssKb(), cpu_s: (cpu.user + cpu.system) / 1e6 };
  writeSync(2, `\n${PROCESS_REPORT_MARKER}${JSON.stringify(report)}\n`);
});
