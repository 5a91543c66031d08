"""How far a study has got: tasks done, failed and pending, errors, active runners
(``simstudy status``)."""

from __future__ import annotations

import math

import numpy as np

from .store import StoreInfo, completion, read_info

# ----------------------------------------------------------------------------- status
def status_rows(store_path) -> tuple[StoreInfo, list[dict]]:
    """Per cell: label, tasks done / failed / pending, fits ok / not converged / failed."""
    info = read_info(store_path)
    done, status = completion(info.path)
    done, status = done.values, status.values
    R, B = info.replicates, info.block_size
    blocks = [list(range(s, min(s + B, R))) for s in range(0, R, B)]
    labels = {c.cell_id: c.label for c in info.design.cells()}
    rows = []
    for ci, cid in enumerate(info.cell_ids):
        row = {"cell_id": cid, "label": labels.get(cid, str(cid)), "tasks": len(blocks),
               "done": 0, "failed": 0, "pending": 0}
        for b in blocks:
            if not done[ci, b].all():
                row["pending"] += 1
            elif (status[ci, b] == "failed").any():
                row["failed"] += 1
            else:
                row["done"] += 1
        st = status[ci][done[ci]]
        row["fits_ok"] = int((st == "ok").sum())
        row["fits_not_converged"] = int((st == "not_converged").sum())
        row["fits_failed"] = int((st == "failed").sum())
        rows.append(row)
    return info, rows


def print_status(store_path, console=None) -> None:
    """Print the design name and, per cell, tasks done / failed / pending and fits not converged."""
    from rich.console import Console
    from rich.markup import escape  # the design's name, labels and paths are text, not markup
    from rich.table import Table

    console = console or Console()
    info, rows = status_rows(store_path)
    d = info.design
    table = Table(title=escape(f"{d.name}: {d.n_cells} cells x {d.replicates} replicates (blocks of {d.block_size}) "
                               f"in {info.path}"))
    table.add_column("cell", overflow="fold")
    for col in ("tasks done", "tasks failed", "tasks pending", "fits not converged"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            escape(r["label"]),
            str(r["done"]),
            f"[red]{r['failed']}[/red]" if r["failed"] else "0",
            str(r["pending"]),
            f"[yellow]{r['fits_not_converged']}[/yellow]" if r["fits_not_converged"] else "0",
        )
    tot = {k: sum(r[k] for r in rows) for k in ("tasks", "done", "failed", "pending", "fits_not_converged",
                                                 "fits_failed", "fits_ok")}
    table.add_section()
    table.add_row("total", str(tot["done"]), str(tot["failed"]), str(tot["pending"]), str(tot["fits_not_converged"]),
                  style="bold")
    console.print(table)
    pct = 100.0 * (tot["done"] + tot["failed"]) / tot["tasks"] if tot["tasks"] else 100.0
    console.print(f"{tot['done'] + tot['failed']}/{tot['tasks']} tasks finished ({pct:.0f}%): fits ok {tot['fits_ok']}, "
                  f"not converged {tot['fits_not_converged']}, failed {tot['fits_failed']}", highlight=False)
    if tot["fits_failed"]:
        _print_errors(info.path, console)
    if tot["failed"]:
        console.print("rerun with `simstudy run DESIGN --store STORE --retry-failed` to retry failed blocks",
                      highlight=False)
    _print_runners(info.path, console)
    if math.isclose(pct, 100.0) and not tot["failed"]:
        console.print("the study is complete", highlight=False)


def failure_table(store_path, limit: int = 10) -> list[tuple[str, int, str]]:
    """Why fits failed: ``(error text, number of fits, first cell label)``, most frequent first."""
    from .store import open_results

    ds = open_results(store_path)
    status = np.asarray(ds["status"].values).astype(str)
    error = np.asarray(ds["error"].values).astype(str)
    done = np.asarray(ds["done"].values, dtype=bool)
    labels = np.asarray(ds["cell_label"].values).astype(str)
    counts: dict[str, list] = {}
    for ci, r in zip(*np.nonzero((status == "failed") & done)):
        entry = counts.setdefault(error[ci, r] or "(no error text)", [0, labels[ci]])
        entry[0] += 1
    rows = sorted(((e, n, lab) for e, (n, lab) in counts.items()), key=lambda x: -x[1])
    return rows[:limit]


def _print_errors(store_path, console) -> None:
    from rich.markup import escape

    rows = failure_table(store_path)
    if not rows:
        return
    console.print("why fits failed (variable `error` of the store):", highlight=False)
    for err, n, label in rows:
        console.print(f"  {n} fit(s), e.g. cell ({escape(label)}): {escape(err)}", highlight=False)


def _print_runners(store_path, console) -> None:
    """Who is running the store now (its lock holder, other runners' tasks)."""
    from rich.markup import escape

    from .lock import lease_dir, live_leases, lock_path, read_holder

    holder = read_holder(lock_path(store_path))
    if holder is not None and not holder.stale_reason():
        console.print(escape(f"being run now by {holder.describe()}"), highlight=False)
    elif holder is not None:
        console.print(escape(f"a stale lock file {holder.path} is left from {holder.host}:{holder.pid} "
                             f"({holder.stale_reason()}); the next run takes it over"), highlight=False)
    leases = live_leases(lease_dir(store_path))
    tasks = [h for h in leases if not h.path.name.startswith("runner-")]
    if tasks:
        hosts = sorted({f"{h.host}:{h.pid}" for h in tasks})
        console.print(f"{len(tasks)} task(s) running now, on {', '.join(hosts[:5])}{' ...' if len(hosts) > 5 else ''}",
                      highlight=False)


def print_verification(store_path, console=None) -> list:
    """``simstudy status --verify``: decode every chunk of every variable and check that every
    block marked done has all its chunks (:func:`simstudy.study.integrity.verify_store`); print
    the damaged chunks with their cell and replicates, or that the store is intact. Returns
    the damage found."""
    from rich.console import Console
    from rich.markup import escape

    from .integrity import verify_store

    console = console or Console()
    damages = verify_store(store_path)
    if not damages:
        console.print(escape(f"verified {store_path}: every chunk of every variable reads back, and every block "
                             "marked done has all its chunks"), highlight=False)
        return damages
    blocks = sorted({d.block for d in damages if d.block is not None})
    console.print(escape(f"{store_path} is damaged: {len(damages)} chunk(s) in {len(blocks)} block(s)"),
                  highlight=False)
    for d in damages:
        console.print(escape(f"  {d.describe()}"), highlight=False)
    console.print(escape(f"recompute the damaged blocks with `simstudy run DESIGN --store {store_path} --repair` "
                         "(the same seeds give the same numbers)"), highlight=False)
    return damages
