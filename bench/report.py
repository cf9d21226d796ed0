"""The benchmark's results as plain-text tables (printed by `make bench`, pasted in
docs/BENCHMARKS.md)."""
from __future__ import annotations

from typing import Any

SHAPES = {
    "chain_long": "hop chain 1 x {long_chain}",
    "chains": "hop chains {chains} x {chain_hops}",
    "quicksort": "quicksort {sort_size}",
    "scatter_gather": "scatter-gather {width} (@atomic)",
}


def _rate(summary: dict[str, Any]) -> str:
    r = summary["per_second"]
    return f"{r['median']:8.0f} ({r['min']:.0f}-{r['max']:.0f})"


def _ratio(engine: dict[str, Any], raw: dict[str, Any]) -> str:
    return f"{engine['ms_per_message'] / raw['ms_per_message']:.2f}x"


def config_table(name: str, result: dict[str, Any]) -> list[str]:
    sizes, m = result["sizes"], result["machine"]
    lines = [f"== {name}: broker {m['broker']}, database {m['database']}, locks {m['locks']}, "
             f"{m['cores']} cores, {m['memory_mb']} MB, {result['repeat']} runs each ==", ""]
    if "engine" in result:
        lines.append(f"{'shape':34} {'engine msg/s med (min-max)':>27} {'raw msg/s':>22} "
                     f"{'engine ms':>10} {'raw ms':>7} {'cost ratio':>10}")
        for key, label in SHAPES.items():
            engine, raw = result["engine"][key], result["raw"][key]
            lines.append(f"{label.format(**sizes):34} {_rate(engine):>27} {_rate(raw):>22} "
                         f"{engine['ms_per_message']:10.2f} {raw['ms_per_message']:7.2f} "
                         f"{_ratio(engine, raw):>10}")
        for key in ("quicksort", "scatter_gather"):
            waits, seconds = (result["engine"][key].get(k) for k in ("lock_waits",
                                                                     "lock_wait_seconds"))
            if waits:
                lines.append(f"  {key}: deliveries that waited for the @atomic lock: median "
                             f"{waits['median']:.0f} ({waits['min']:.0f}-{waits['max']:.0f}), "
                             f"{seconds['median']:.1f} s waited in all")
        le, lr = result["engine"]["latency_ms"], result["raw"]["latency_ms"]
        lines.append(f"  latency send -> handler start, idle ({le['samples']} samples): engine "
                     f"p50 {le['p50']:.1f} ms p99 {le['p99']:.1f} ms; raw p50 {lr['p50']:.1f} ms "
                     f"p99 {lr['p99']:.1f} ms")
        lines.append("")
    if "scaling" in result:
        lines.append(f"scaling: hop chains {sizes['scaling_chains']} x {sizes['scaling_hops']}, "
                     "msg/s median (min-max)")
        lines.append(f"{'pool':12} {'engine':>22} {'raw':>22} {'cost ratio':>10}")
        for pool, engine in result["scaling"]["engine"].items():
            raw = result["scaling"]["raw"][pool]
            lines.append(f"{pool:12} {_rate(engine):>22} {_rate(raw):>22} {_ratio(engine, raw):>10}")
        lines.append("")
    if "growth" in result:
        g = result["growth"]
        lines.append(f"growth: {g['log_rows']:,} log rows after prefill ({g['prefill_seconds']:.0f} s): "
                     f"hop chains {sizes['chains']} x {sizes['chain_hops']} at "
                     f"{g['chains_full_log']['ms_per_message']:.2f} ms/msg vs "
                     f"{g['chains_empty_log']['ms_per_message']:.2f} ms/msg on an empty log "
                     f"({g['full_over_empty_ms']:.2f}x)")
        a = g["active_incidents_run"]
        lines.append(f"  {g['active_incidents']} active incidents at once "
                     f"({sizes['active_hops']} hops each): {_rate(a).strip()} msg/s, "
                     f"{a['ms_per_message']:.2f} ms/msg")
    if "memory" in result:
        mem = result["memory"]
        lines.append(f"memory: {mem['messages']:,} messages at {mem['per_second']:.0f} msg/s; worker "
                     f"RSS {mem['rss_before_mb']:.0f} -> {mem['rss_after_mb']:.0f} MB "
                     f"({mem['rss_growth_mb']:+.1f} MB)")
    return lines


def table(results: dict[str, Any]) -> str:
    lines = [f"{results['command']}  ({results['date']})", ""]
    for name, result in results["configs"].items():
        lines += [*config_table(name, result), ""]
    lines.append("cost ratio = engine ms per message / raw Celery ms per message (lower is better)")
    return "\n".join(lines)
