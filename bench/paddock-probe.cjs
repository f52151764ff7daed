// Loaded into the gateway and soak benchmarks' Paddock process (node
// --require): once a second it appends one JSON line to BENCH_PROBE_FILE with
// the process's CPU time, its V8 heap in use (now, and after the last full
// collection), how late its event loop ran
// (p50, p99, max) and every garbage collection pause of that second, so the
// benchmark can say where a scenario's tail went. Plain CommonJS: --require
// runs it before the server's own modules load.
const { appendFileSync } = require('node:fs');
const { PerformanceObserver, monitorEventLoopDelay, constants } = require('node:perf_hooks');

const file = process.env.BENCH_PROBE_FILE;
if (file) {
  const KINDS = {
    [constants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
    [constants.NODE_PERFORMANCE_GC_MAJOR]: 'mark-compact',
    [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
    [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak-callbacks',
  };
  let gc = [];
  // The heap in use just after the last full collection: what a leak raises, where the heap
  // in use at any one moment is mostly how much garbage waits for the next one.
  let heapAfterFullGcMb = null;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gc.push([KINDS[e.detail?.kind] ?? 'other', Number(e.duration.toFixed(3))]);
      if (e.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR)
        heapAfterFullGcMb = Number((process.memoryUsage().heapUsed / 2 ** 20).toFixed(1));
    }
  }).observe({ entryTypes: ['gc'] });
  // A coarse timer (50 wake-ups a second) that still sees every stall longer than a few ms. The
  // histogram holds the whole interval between its ticks: lateness is that less the resolution.
  const RESOLUTION_MS = 20;
  const delay = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  delay.enable();
  let cpu = process.cpuUsage();
  setInterval(() => {
    const used = process.cpuUsage(cpu);
    cpu = process.cpuUsage();
    const ms = (ns) => Number(Math.max(0, ns / 1e6 - RESOLUTION_MS).toFixed(3));
    const line = {
      at: Date.now(),
      cpuMs: (used.user + used.system) / 1000,
      delayP50Ms: ms(delay.percentile(50)),
      delayP99Ms: ms(delay.percentile(99)),
      delayMaxMs: ms(delay.max),
      heapUsedMb: Number((process.memoryUsage().heapUsed / 2 ** 20).toFixed(1)),
      heapAfterFullGcMb,
      gc,
    };
    gc = [];
    delay.reset();
    appendFileSync(file, `${JSON.stringify(line)}\n`);
  }, 1000).unref();
}
