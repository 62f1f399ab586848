"""The run database: every finished evaluation and every stored block, written as they finish.

One SQLite file per run folder (`run.sqlite`). Rows are inserted in one transaction each, with
`UNIQUE(mode, idx)`, so a run killed at any point (kill -9 included) leaves only whole rows, and
`--resume` skips exactly what is there: nothing finished is redone or lost.
"""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS evaluations (
    mode TEXT NOT NULL,            -- base | comp
    idx INTEGER NOT NULL,          -- index of the configuration in the subspace
    config TEXT NOT NULL,          -- JSON list of rates
    params INTEGER, macs INTEGER,
    metrics TEXT NOT NULL,         -- JSON: every metric of the objective
    accuracy REAL,
    curve TEXT NOT NULL,           -- JSON list of [iter, accuracy]
    seconds REAL NOT NULL,
    worker TEXT NOT NULL,
    finished_at REAL NOT NULL,
    iterations INTEGER,            -- fine-tuning iterations run (fewer than the budget: stopped)
    stop TEXT,                     -- 'full' (the whole budget) or why it stopped (earlystop.py)
    stop_target REAL,              -- the accuracy target a stopped candidate could not reach
    UNIQUE(mode, idx));
CREATE TABLE IF NOT EXISTS blocks (
    key TEXT PRIMARY KEY, grp INTEGER, seconds REAL, finished_at REAL);
CREATE TABLE IF NOT EXISTS static_metrics (idx INTEGER PRIMARY KEY, metrics TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS phases (name TEXT PRIMARY KEY, seconds REAL NOT NULL);
"""
COLS = "mode, idx, config, params, macs, metrics, accuracy, curve, seconds, worker, finished_at, " \
       "iterations, stop, stop_target"
# columns added after the first release: a run folder made before them gets them on open
ADDED = {"iterations": "INTEGER", "stop": "TEXT", "stop_target": "REAL"}


class RunDB:
    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = sqlite3.connect(str(self.path), timeout=60, isolation_level=None)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=FULL")
        self.con.executescript(SCHEMA)
        have = {row[1] for row in self.con.execute("PRAGMA table_info(evaluations)")}
        for col, kind in ADDED.items():
            if col not in have:
                self.con.execute(f"ALTER TABLE evaluations ADD COLUMN {col} {kind}")

    def close(self) -> None:
        self.con.close()

    # ---- meta --------------------------------------------------------------------------------
    def get_meta(self, key: str):
        row = self.con.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value) -> None:
        self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    # ---- evaluations -------------------------------------------------------------------------
    def add_evaluation(self, mode: str, rec: dict) -> bool:
        """Insert one finished evaluation; False if (mode, idx) was already there (a duplicate)."""
        cur = self.con.execute(
            f"INSERT OR IGNORE INTO evaluations ({COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (mode, rec["idx"], json.dumps(list(rec["config"])), rec.get("params"), rec.get("macs"),
             json.dumps(rec["metrics"]), rec.get("accuracy"), json.dumps(rec.get("curve", [])),
             float(rec["seconds"]), str(rec.get("worker", "")), time.time(), rec.get("iterations"),
             rec.get("stop", "full"), rec.get("stop_target")))
        return cur.rowcount == 1

    def evaluations(self, mode: str | None = None) -> list[dict]:
        q = f"SELECT {COLS} FROM evaluations" + (" WHERE mode=?" if mode else "") + " ORDER BY finished_at, idx"
        rows = self.con.execute(q, (mode,) if mode else ()).fetchall()
        return [{"mode": m, "idx": i, "config": tuple(json.loads(c)), "params": p, "macs": mc,
                 "metrics": json.loads(me), "accuracy": a, "curve": json.loads(cu), "seconds": s,
                 "worker": w, "finished_at": f, "iterations": it, "stop": st or "full", "stop_target": tg}
                for m, i, c, p, mc, me, a, cu, s, w, f, it, st, tg in rows]

    def done(self, mode: str) -> dict[int, dict]:
        return {r["idx"]: r for r in self.evaluations(mode)}

    # ---- blocks, static metrics, phases -------------------------------------------------------
    def add_block(self, key: str, group: int, seconds: float) -> None:
        self.con.execute("INSERT OR IGNORE INTO blocks VALUES (?,?,?,?)", (key, group, seconds, time.time()))

    def blocks(self) -> dict[str, dict]:
        rows = self.con.execute("SELECT key, grp, seconds FROM blocks").fetchall()
        return {k: {"group": g, "seconds": s} for k, g, s in rows}

    def static_metrics(self) -> dict[int, dict]:
        return {i: json.loads(m) for i, m in self.con.execute("SELECT idx, metrics FROM static_metrics")}

    def set_static(self, idx: int, metrics: dict) -> None:
        self.con.execute("INSERT OR REPLACE INTO static_metrics VALUES (?, ?)", (idx, json.dumps(metrics)))

    def add_phase_seconds(self, name: str, seconds: float) -> None:
        self.con.execute("INSERT INTO phases VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET seconds=seconds+?",
                         (name, seconds, seconds))

    def phase_seconds(self, name: str) -> float:
        row = self.con.execute("SELECT seconds FROM phases WHERE name=?", (name,)).fetchone()
        return float(row[0]) if row else 0.0
