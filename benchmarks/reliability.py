"""Benchmark: what a user or a fault can do to expertlab, counted: bad inputs, params mutations, kill -9s,
concurrent ingests, judge faults and concurrent judges. Prints one line per trial set and a summary table.

Every trial runs the real CLI (in this process, or as processes killed or raced against each other) on a
tiny model in a temporary directory; nothing outside it is touched. `make reliability` runs it all; the
README's "Reliability" section quotes its figures.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BIN = Path(sys.executable).parent


@dataclass
class Tally:
    """One trial set: how many were tried and how many ended as they must."""

    name: str
    tried: int = 0
    held: int = 0
    failures: list[str] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)  # further counts (faults injected, calls billed...)

    def record(self, ok: bool, what: str) -> None:
        self.tried += 1
        self.held += ok
        if not ok:
            self.failures.append(what)

    def line(self) -> str:
        extra = "".join(f", {name} {value}" for name, value in self.figures.items())
        return f"{self.name}: {self.held} of {self.tried} held{extra}"


@contextmanager
def chdir(path: Path) -> Iterator[None]:
    here = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(here)


def cli(argv: list[str]) -> tuple[int, str]:
    """The real CLI in this process: exit code and everything it printed to stderr."""
    from expertlab.cli import main

    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


def env() -> dict[str, str]:
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(ROOT), DVC_NO_ANALYTICS="1")


def tiny_model(directory: Path, hidden: int = 32, experts: int = 4) -> Path:
    with redirect_stderr(io.StringIO()):
        return _tiny_model(directory, hidden, experts)


def _tiny_model(directory: Path, hidden: int, experts: int) -> Path:
    from tests.conftest import build_tiny_moe, build_tokenizer

    tokenizer = build_tokenizer()
    model = build_tiny_moe(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id)
    if hidden != 32 or experts != 4:  # a larger checkpoint, for kills that land mid-copy
        import torch
        from transformers import Qwen3MoeForCausalLM

        config = model.config
        config.hidden_size, config.num_experts, config.moe_intermediate_size = hidden, experts, hidden * 2
        config.num_hidden_layers, config.intermediate_size = 4, hidden * 2
        torch.manual_seed(0)
        model = Qwen3MoeForCausalLM(config).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


# --- bad inputs and params ----------------------------------------------------------------------------


def bad_inputs(scratch: Path, model: Path) -> Tally:
    """Every case of tests/bad_inputs.py: exit 2, one error line naming the culprit, no traceback, nothing written."""
    from tests.bad_inputs import CASES, listing, prepare_workspace, stage_case

    tally = Tally("bad input files and paths")
    with redirect_stderr(io.StringIO()), redirect_stdout(io.StringIO()):
        template = prepare_workspace(scratch / "bad-inputs", model)
    for number, case in enumerate(CASES):
        work = stage_case(case, template, scratch / f"bad-{number}")
        before = listing(work)
        with chdir(work):
            code, stderr = cli(case.argv)
        lines = [line for line in stderr.splitlines() if line.startswith(f"expertlab {case.argv[0]}: ")]
        ok = code == 2 and len(lines) == 1 and case.culprit in lines[0] and "Traceback" not in stderr
        tally.record(ok and listing(work) == before, case.name)
        shutil.rmtree(work)
    return tally


def _leaves(node: object, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], object]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, key), value
            yield from _leaves(value, (*path, key))


def _set(data: dict, path: tuple[str, ...], value: object) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


def _rename(data: dict, path: tuple[str, ...], new: str) -> None:
    for part in path[:-1]:
        data = data[part]
    data[new] = data.pop(path[-1])


REFERRED = ("models", "calibrations", "judges", "quantization")  # mappings of names other keys refer to
USER_NAMED = ("report.agreement_windows",)  # window names are the user's to choose: renaming one is a valid edit
PAIRS = ("report.agreement_windows",)  # values that are (lowest, highest) pairs, not lists of distinct entries


def params_mutations() -> Tally:
    """Every key of params.yaml misspelt, every list given an entry twice, every number given a word: each is
    rejected and the message names the key path (for a name other keys refer to, the key referring to it)."""
    import yaml

    from expertlab.params import ParamsError, parse_params

    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    tally = Tally("params mutations")
    trials: list[tuple[str, dict, Callable[[str], bool]]] = []
    for path, value in _leaves(default):
        dotted, parent, key = ".".join(path), ".".join(path[:-1]), path[-1]
        if parent == "study.tasks":
            continue  # a task group's name is the user's to choose, and so are its tasks' order and number
        misspelt = copy.deepcopy(default)
        _rename(misspelt, path, key + "z")
        if parent in REFERRED:  # e.g. "study.models: 'toy' has no entry under models"
            trials.append((f"misspelt {dotted}", misspelt, lambda m, key=key: f"'{key}'" in m and ("no entry under" in m or "is not in" in m)))
        elif parent not in USER_NAMED:
            trials.append((f"misspelt {dotted}", misspelt, lambda m, d=f"{dotted}z": f"{d}: unknown key" in m))
        if isinstance(value, list) and value:
            twice = copy.deepcopy(default)
            _set(twice, path, [*value, value[0]])
            if parent in PAIRS:  # a third entry: refused as no pair, naming the key
                trials.append((f"{dotted} twice", twice, lambda m, d=dotted: f"{d}: Tuple should have at most 2 items" in m))
            else:
                trials.append((f"{dotted} twice", twice, lambda m, d=dotted, p=parent: "twice" in m and (d in m or p in m)))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            word = copy.deepcopy(default)
            _set(word, path, "many")
            trials.append((f"{dotted} a word", word, lambda m, d=dotted: f"{d}: Input should be a valid" in m))
    for name, data, names_it in trials:
        try:
            parse_params(data, "params.yaml")
            ok = False
        except ParamsError as err:
            ok = names_it(str(err))
        tally.record(ok, name)
    return tally


# --- kill -9 ------------------------------------------------------------------------------------------


def _start(argv: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "expertlab"), *argv], cwd=cwd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _timed_run(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    assert subprocess.run([str(BIN / "expertlab"), *argv], cwd=cwd, env=env(), capture_output=True).returncode == 0
    return time.perf_counter() - started


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _artifacts_in(store: Path) -> int | None:
    """How many artifacts a store holds, or None when it cannot be read (a corrupt store)."""
    import duckdb

    try:
        con = duckdb.connect(str(store), read_only=True)
    except duckdb.Error:
        return None
    try:
        return con.execute("select count(*) from artifacts").fetchone()[0]
    finally:
        con.close()


def killed_stages(scratch: Path, kills: int, seed: int) -> Tally:
    """`prune` of a checkpoint and `ingest` into a store, killed with SIGKILL at random moments: a pruned
    checkpoint is absent or whole, the store holds its old or its new artifacts and nothing between; the next
    run succeeds, equals an unkilled run and leaves no temporary behind."""
    tally = Tally("kill -9 mid-stage")
    rng = random.Random(seed)
    work = scratch / "kills"
    work.mkdir()
    tiny_model(work / "model", hidden=256, experts=16)
    (work / "mask.json").write_text(json.dumps([list(range(8))] * 4))
    (work / "calib.jsonl").write_text("".join(json.dumps({"text": "aspirin fever trial"}) + "\n" for _ in range(8)))
    prune = ["prune", "model", "--mask", "mask.json", "--out", "pruned"]
    seconds = _timed_run(prune, work)
    reference = _files(work / "pruned")
    _timed_run(["observe", "model", "--data", "calib.jsonl", "--out", "obs"], work)
    _timed_run(["select", "obs", "--ratios", "0.5", "--out", "masks"], work)
    _timed_run(["ingest", "--store", "before.duckdb", "obs"], work)  # the store a killed ingest must leave as it was
    ingest = ["ingest", "--store", "store.duckdb", "obs", "masks"]
    shutil.copyfile(work / "before.duckdb", work / "store.duckdb")
    ingest_seconds = _timed_run(ingest, work)
    tally.figures["killed mid-write"] = 0
    for number in range(kills):
        pruning = number % 2 == 0
        argv, out, full = (prune, work / "pruned", seconds) if pruning else (ingest, work / "store.duckdb", ingest_seconds)
        if pruning:
            shutil.rmtree(out, ignore_errors=True)
        else:
            shutil.copyfile(work / "before.duckdb", out)
        process = _start(argv, work)
        time.sleep(rng.uniform(0, full))
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        # a kill that landed mid-write leaves its temporary (or an ingest's work directory) beside the output
        tally.figures["killed mid-write"] += any(p.name.startswith(f".{out.name}.") for p in work.iterdir())
        if pruning:
            whole = not out.exists() or _files(out) == reference
        else:
            whole = _artifacts_in(out) in (1, 1 + 1)  # the observation alone, or with the selection
        rerun = subprocess.run([str(BIN / "expertlab"), *argv], cwd=work, env=env(), capture_output=True)
        again = rerun.returncode == 0 and (_files(out) == reference if pruning else _artifacts_in(out) == 2)
        leftovers = [p.name for p in work.iterdir() if p.name.startswith(".") and p.name != ".expertlab"]
        tally.record(whole and again and not leftovers, f"{argv[0]} killed: whole={whole} rerun={again} left={leftovers}")
    tally.figures["prune kills"] = (kills + 1) // 2
    tally.figures["ingest kills"] = kills // 2
    return tally


# --- concurrent ingests -------------------------------------------------------------------------------


def concurrent_ingests(scratch: Path, model: Path, rounds: int) -> Tally:
    """Two ingests of different artifact sets into one store, released together: both exit 0, the store equals
    a serial ingest of the later one's set, and each reported summary is true."""
    import duckdb

    tally = Tally("concurrent ingests")
    work = scratch / "ingests"
    work.mkdir()
    shutil.copytree(model, work / "model")
    (work / "calib.jsonl").write_text('{"text": "aspirin fever"}\n')
    with chdir(work), redirect_stderr(io.StringIO()), redirect_stdout(io.StringIO()):
        for seed in (0, 1):
            assert cli(["observe", "model", "--data", "calib.jsonl", "--seed", str(seed), "--out", f"obs/{seed}"])[0] == 0
            assert cli(["select", f"obs/{seed}", "--ratios", "0.5", "--out", f"masks/{seed}"])[0] == 0

    def tables(path: Path) -> dict[str, list]:
        con = duckdb.connect(str(path), read_only=True)
        try:
            names = [row[0] for row in con.execute("select table_name from duckdb_tables() order by 1").fetchall()]
            return {
                name: sorted(map(repr, con.execute(f"select * exclude (ingested_at) from {name}" if name == "artifacts"
                                                   else f"select * from {name}").fetchall()))
                for name in names
            }
        finally:
            con.close()

    sets = {"a": ["obs/0", "masks/0"], "b": ["obs/1", "masks/1", "obs/0"]}
    serial = {}
    for name, dirs in sets.items():
        subprocess.run([str(BIN / "expertlab"), "ingest", "--store", f"serial-{name}.duckdb", *dirs], cwd=work, env=env(),
                       check=True, capture_output=True)  # fmt: skip
        serial[name] = tables(work / f"serial-{name}.duckdb")
    for _ in range(rounds):
        (work / "store.duckdb").unlink(missing_ok=True)
        processes = {
            name: subprocess.Popen([str(BIN / "expertlab"), "ingest", "--store", "store.duckdb", *dirs], cwd=work, env=env(),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name, dirs in sets.items()
        }  # fmt: skip
        outcomes = {name: (p.wait(), p.stdout.read()) for name, p in processes.items()}
        codes = all(code == 0 for code, _ in outcomes.values())
        final = tables(work / "store.duckdb")
        # whichever ran second planned against the first's store: the result is one set's serial ingest
        matches = final in (serial["a"], serial["b"])
        tally.record(codes and matches, f"codes={[c for c, _ in outcomes.values()]} matches={matches}")
    return tally


# --- judges -------------------------------------------------------------------------------------------


def _fault(rng: random.Random) -> object:
    from tests.openai_server import Answer, Fail, Hang

    return rng.choice(
        [
            Fail(429, retry_after="0"), Fail(500), Fail(502), Fail(503), Fail(529),
            Hang(0.5),  # past the client's timeout
            Answer(bytes_per_s=40, trickle_headers=True),  # a trickle that would take seconds
            Fail(200, body="<html><body>502 Bad Gateway</body></html>"),  # a gateway's page, status 200
            Answer("The summary looks faithful to me."),  # an answer that is not the JSON asked for
        ]
    )  # fmt: skip


def judge_faults(scratch: Path, prompts: int, seed: int) -> Tally:
    """Prompts against a loopback server answering each with random faults before its answer (fewer than the
    retry bounds): every prompt ends with its verdict, billed calls are the server's JSON completions, and
    no prompt validly answered is ever asked again."""
    from expertlab.judges.cache import VerdictCache
    from expertlab.judges.client import ChatClient, RetryPolicy
    from expertlab.judges.outcomes import JudgeRequest
    from expertlab.judges.providers import Endpoint
    from tests.openai_server import Answer, OpenAIServer
    from tests.test_judge_client import KEY_ENV, SECRET, validate

    rng = random.Random(seed)
    tally = Tally("judge prompts through faults")
    script: dict[str, list] = {}
    for index in range(prompts):
        faults = [_fault(rng) for _ in range(rng.randrange(0, 4))]
        # at most max_invalid - 1 answers that do not count as answers, so every prompt can end answered
        unanswers = [f for f in faults if getattr(f, "status", None) == 200 or isinstance(f, Answer)]
        script[f"prompt-{index:03d}"] = [*faults[: len(faults) - max(0, len(unanswers) - 2)], Answer()]
    os.environ[KEY_ENV] = SECRET
    policy = RetryPolicy(max_attempts=5, max_invalid=3, timeout_s=0.3, backoff_s=0.01, backoff_max_s=0.05)
    with OpenAIServer(SECRET, script) as server, VerdictCache(scratch / "faults.jsonl") as cache:
        endpoint = Endpoint(server.base_url, "judge-model", api_key_env=KEY_ENV)
        with ChatClient(endpoint, retry=policy, concurrency=4) as client:
            requests = [JudgeRequest(item, [{"role": "user", "content": item}]) for item in script]
            outcomes = {o.key: o for o in client.judge_all(requests, validate, cache=cache)}
        completions = {item: server.completions(item) for item in script}
    injected = sum(len(actions) - 1 for actions in script.values())
    for item, actions in script.items():
        answered_again = sum(1 for r in server.requests_for(item) if r.attempt > len(actions) - 1)
        tally.record(outcomes[item].status == "ok" and item in cache and answered_again == 0, item)
    tally.figures["faults injected"] = injected
    tally.figures["requests"] = len(server.received)
    tally.figures["calls billed"] = client.counters.billed
    tally.figures["unreadable answers"] = client.counters.unreadable
    billed_by_server = sum(completions.values()) - client.counters.unreadable  # 200s that were not JSON are no calls
    tally.figures["billed miscounted"] = abs(client.counters.billed - billed_by_server)
    return tally


def concurrent_judges(scratch: Path, prompts: int, rounds: int) -> Tally:
    """Two processes judging the same prompts through one verdict cache, released together: every prompt asked
    once between them (the double-billed calls are the requests beyond one per prompt)."""
    import collections

    from tests.openai_server import Answer, OpenAIServer
    from tests.test_judge_client import KEY_ENV, SECRET, judge_in_two_processes

    tally = Tally("concurrent judges sharing a cache")
    double = 0
    for number in range(rounds):
        cache = scratch / f"shared-{number}.jsonl"
        with OpenAIServer(SECRET, default=Answer(delay_s=0.02)) as server:
            reports = judge_in_two_processes(server.base_url, cache, prompts, {**env(), KEY_ENV: SECRET})
            asked = collections.Counter(received.item for received in server.received)
        extra = sum(count - 1 for count in asked.values())
        double += extra
        whole = all(r["held"] == prompts and r["values"] == ["faithful"] * prompts for r in reports)
        tally.record(extra == 0 and len(asked) == prompts and whole, f"round {number}: {extra} prompts asked twice")
    tally.figures["prompts per round"] = prompts
    tally.figures["double-billed calls"] = double
    return tally


# --- main ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="kill -9s of running stages")
    parser.add_argument("--rounds", type=int, default=8, help="rounds of concurrent ingests")
    parser.add_argument("--prompts", type=int, default=150, help="prompts per judge trial")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tallies: list[Tally] = []
    with tempfile.TemporaryDirectory(prefix="expertlab-reliability-") as scratch_dir:
        scratch = Path(scratch_dir)
        model = tiny_model(scratch / "tiny-model")
        for run in (
            lambda: bad_inputs(scratch, model),
            params_mutations,
            lambda: killed_stages(scratch, args.kills, args.seed),
            lambda: concurrent_ingests(scratch, model, args.rounds),
            lambda: judge_faults(scratch, args.prompts, args.seed),
            lambda: concurrent_judges(scratch, args.prompts, max(1, args.rounds // 2)),
        ):
            tally = run()
            print(tally.line(), flush=True)
            for failure in tally.failures:
                print(f"  did not hold: {failure}")
            tallies.append(tally)
    print("\n| trials | tried | held |\n|---|---|---|")
    for tally in tallies:
        print(f"| {tally.name} | {tally.tried} | {tally.held} |")
    return 0 if all(t.held == t.tried for t in tallies) else 1


if __name__ == "__main__":
    sys.exit(main())
