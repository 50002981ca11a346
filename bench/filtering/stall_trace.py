#!/usr/bin/env python3
"""Reads `perf script -F comm,tid,cpu,time,event,trace` output of a reload
run (bench/filtering/stall-trace.sh) and says where the deciding thread's
long waits came from, using only what the guest kernel recorded:

- tick gaps: the scheduler tick fires every 4 ms (CONFIG_HZ=250) on a busy
  CPU. A gap well over that on the decider's CPU while the decider stayed
  current, with the other CPU ticking on time, means that virtual CPU was
  not running at all: the hypervisor had taken it.
- the longest interrupt and softirq handlers, which a kernel without
  IRQ_TIME_ACCOUNTING charges to whatever thread they interrupted.
"""
import re
import sys
from collections import Counter

LINE = re.compile(r'^\s*(.*?)\s+(-?\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)$')


def events(path):
    with open(path) as f:
        for line in f:
            m = LINE.match(line)
            if m:
                comm, tid, cpu, t, ev, rest = m.groups()
                yield comm, tid, int(cpu), float(t), ev, rest


def main(path, tick_ms=4.0):
    busiest = Counter(tid for comm, tid, *_ in events(path) if comm.startswith('filter_bench'))
    if not busiest:
        sys.exit(f'{path}: no filter_bench events; was the trace taken during a reload run?')
    decider = busiest.most_common(1)[0][0]
    last_tick, current_since_tick, handler_start = {}, {}, {}
    gaps, handlers = [], []
    for comm, tid, cpu, t, ev, rest in events(path):
        if ev == 'sched:sched_switch':
            current_since_tick[cpu] = False
        if ev == 'irq_vectors:local_timer_entry':
            if cpu in last_tick and current_since_tick.get(cpu) and tid == decider:
                gaps.append((t - last_tick[cpu], cpu, last_tick[cpu]))
            last_tick[cpu] = t
            current_since_tick[cpu] = tid == decider
        kind = ev.rsplit('_', 1)[0]
        if ev.endswith('_entry'):
            handler_start[(cpu, kind)] = (t, comm, rest)
        elif ev.endswith('_exit') and (cpu, kind) in handler_start:
            t0, during, what = handler_start.pop((cpu, kind))
            handlers.append((t - t0, cpu, kind, during, what[:32], t0))
    late = sorted((g for g in gaps if g[0] * 1e3 > tick_ms + 0.5), reverse=True)
    print(f'decider thread {decider}: {len(gaps)} ticks while it ran; '
          f'{len(late)} came over 0.5 ms late (the virtual CPU was not running):')
    for gap, cpu, at in late[:10]:
        print(f'  {gap * 1e3:.3f} ms between ticks on cpu{cpu} after {at:.6f}')
    print('longest interrupt and softirq handlers (charged to the thread they interrupt):')
    for took, cpu, kind, during, what, at in sorted(handlers, reverse=True)[:8]:
        print(f'  {took * 1e3:.3f} ms cpu{cpu} {kind} {what} during {during} at {at:.6f}')


if __name__ == '__main__':
    if len(sys.argv) != 2:
        sys.exit('usage: stall_trace.py PERF_SCRIPT_OUTPUT')
    main(sys.argv[1])
