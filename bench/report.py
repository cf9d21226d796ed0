"""The benchmark's results as plain-text tables (printed by `make bench`, pasted in
docs/BENCHMARKS.md)."""
from __future__ import annotations

from typing import Any

SHAPES = {
    "chain_long": "hop chain 1 x {long_chain}",
    "chains": "hop chains {chains} x {chain_hops}",
    "quicksort": "quicksort {sort_size}",
    "scatter_gather": "scatter-gather {width}",
}
# The results' keys, in the table's order, and their column names.
IMPLEMENTATIONS = {"engine": "engine", "stock": "stock", "raw": "raw-own"}
MS_COLUMNS = ("engine", "stock")
BASELINES = ("stock", "raw")  # engine ms / each one's: the cost ratios, the headline first


def _rate(summary: dict[str, Any]) -> str:
    r = summary["per_second"]
    return f"{r['median']:.0f} ({r['min']:.0f}-{r['max']:.0f})"


def _ratio(engine: dict[str, Any], baseline: dict[str, Any]) -> str:
    return f"{engine['ms_per_message'] / baseline['ms_per_message']:.2f}x"


def _row(label: str, figures: dict[str, dict[str, Any]], *, with_ms: bool) -> str:
    rates = " ".join(f"{_rate(figures[key]):>16}" for key in IMPLEMENTATIONS)
    ms = "".join(f"{figures[key]['ms_per_message']:6.2f} " for key in MS_COLUMNS) if with_ms else ""
    ratios = " ".join(f"{_ratio(figures['engine'], figures[key]):>7}" for key in BASELINES)
    return f"{label:19} {rates} {ms}{ratios}"


def _headers(first: str, *, with_ms: bool) -> list[str]:
    """Two lines: the column groups, then the implementations (100 columns in all)."""
    rates = " ".join(f"{name:>16}" for name in IMPLEMENTATIONS.values())
    ms_group = f"{'ms/msg':^13} " if with_ms else ""
    ms = "".join(f"{IMPLEMENTATIONS[key]:>6} " for key in MS_COLUMNS) if with_ms else ""
    ratios = " ".join(f"{IMPLEMENTATIONS[key]:>7}" for key in BASELINES)
    return [f"{'':19} {'msg/s, median (min-max) of the runs':^50} {ms_group}"
            f"{'engine ms /':^15}".rstrip(),
            f"{first:19} {rates} {ms}{ratios}"]


def config_table(name: str, result: dict[str, Any]) -> list[str]:
    sizes, m = result["sizes"], result["machine"]
    lines = [f"== {name}: broker {m['broker']}, database {m['database']}, locks {m['locks']}, "
             f"{m['cores']} cores, {m['memory_mb']} MB, {result['repeat']} runs each ==", ""]
    if "engine" in result:
        lines += _headers("shape", with_ms=True)
        for key, label in SHAPES.items():
            if key in result["engine"]:  # not all with --phases chains
                figures = {impl: result[impl][key] for impl in IMPLEMENTATIONS}
                lines.append(_row(label.format(**sizes), figures, with_ms=True))
        for key in ("quicksort", "scatter_gather"):
            waits, seconds = (result["engine"].get(key, {}).get(k) for k in ("lock_waits",
                                                                             "lock_wait_seconds"))
            if waits:
                lines.append(f"  {key}: deliveries that waited for the @atomic lock: median "
                             f"{waits['median']:.0f} ({waits['min']:.0f}-{waits['max']:.0f}), "
                             f"{seconds['median']:.1f} s in all")
        if "latency_ms" in result["engine"]:
            samples = result["engine"]["latency_ms"]["samples"]
            each = ", ".join(f"{label} {result[key]['latency_ms']['p50']:.1f} / "
                             f"{result[key]['latency_ms']['p99']:.1f}"
                             for key, label in IMPLEMENTATIONS.items())
            lines += [f"  latency send -> handler start on an idle system ({samples} samples), "
                      "p50 / p99 ms:", f"    {each}"]
        lines.append("")
    if "scaling" in result:
        lines.append(f"scaling: hop chains {sizes['scaling_chains']} x {sizes['scaling_hops']}")
        lines += _headers("pool", with_ms=False)
        for pool in result["scaling"]["engine"]:
            figures = {impl: result["scaling"][impl][pool] for impl in IMPLEMENTATIONS}
            lines.append(_row(pool, figures, with_ms=False))
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
    if "timers" in result:
        t = result["timers"]
        none, pending = t["chains"]["none"], t["chains"]["pending"]
        lines += [f"timers: hop chains {sizes['chains']} x {sizes['chain_hops']} with "
                  f"{t['pending']:,} timers pending: {_rate(pending).strip()} msg/s, "
                  f"{pending['ms_per_message']:.2f} ms/msg vs {none['ms_per_message']:.2f} "
                  f"with none ({t['chains']['pending_over_none_ms']:.2f}x)",
                  f"  {t['fired']} timers due on an idle system, ms late (median, max): "
                  f"published {t['published_late_ms']['median']:.0f}, "
                  f"{t['published_late_ms']['max']:.0f}; handler start "
                  f"{t['handled_late_ms']['median']:.0f}, {t['handled_late_ms']['max']:.0f}"]
    if "priority" in result:
        p = result["priority"]
        lines += [f"priority: a {p['hops']}-hop urgent chain behind {p['backlog']:,} waiting messages "
                  f"(median {p['waiting']['median']:,.0f} when it started): "
                  f"{p['urgent_seconds']['median']:.2f} s",
                  f"  vs {p['idle_seconds']['median']:.2f} s idle ({p['urgent_over_idle']:.2f}x; "
                  f"goal 2x); backlog left when it completed: {p['overtaken']['median']:,.0f}; "
                  f"at normal: {p['normal_seconds']['median']:.1f} s"]
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
    lines += ["stock: Celery out of the box (JSON, acks late, prefetch 1, no publisher confirms);",
              "raw-own: Celery with the engine's settings (celeryconfig.py). ms/msg: 1000 / median "
              "msg/s.",
              "engine ms / stock ms is what the bookkeeping costs (lower is better; 1.00x: nothing)."]
    return "\n".join(lines)
