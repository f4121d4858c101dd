"""The task contract: declarations against the boards, heads and modes per task, the child process per
cell (crash, timeout), re-scoring with the task's real scorer."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "board"))
import toy_task  # noqa: E402 - registers the toy task

from benchmark.board.protocol import BoardError, BoardProtocol  # noqa: E402
from benchmark.board.store import Board, boards_dir  # noqa: E402
from benchmark.cli import main  # noqa: E402
from benchmark.costs import TaskCost  # noqa: E402
from benchmark.data.registry import DATASETS  # noqa: E402
from benchmark.records import RunRecord  # noqa: E402
from benchmark.grid import BackboneChoice, GridError, GridRequest, run_grid  # noqa: E402
from benchmark.scoring import SCORERS, scorer  # noqa: E402
from tasks.registry import TaskDataset, TaskDeclarationError, TaskInfo, all_tasks, check_board  # noqa: E402

DECLARATION = dict(name="t", title="t", version=1, datasets={"rsna": TaskDataset("classification")},
                   heads=("linear",), default_heads={"*": "linear"}, modes=("cached",), default_mode="cached",
                   adapter="x:y", scorer="classification",
                   cost=TaskCost(batch_size=8, max_epochs=5, head_cost=0.1, features="global", cache_dtype_bytes=4))
REPOSITORY_BOARDS = sorted((Path(__file__).resolve().parents[1] / "leaderboards").glob("*/protocol.json"))


@pytest.mark.parametrize("protocol_file", REPOSITORY_BOARDS, ids=lambda path: path.parent.name)
def test_every_registered_task_matches_the_boards_that_name_it(protocol_file: Path) -> None:
    import benchmark.data.datasets  # noqa: F401 - registers the datasets

    protocol = BoardProtocol.read(protocol_file)
    check_board(protocol)  # scorer pins, datasets with a headline metric, overrides
    tasks = {info.name: info for info in all_tasks()}
    for name, board_task in protocol.tasks.items():
        if name not in tasks:
            continue  # a task the board plans for that is not built yet: nothing to check
        info = tasks[name]
        assert board_task.version == info.version, name
        assert set(board_task.modes) <= set(info.modes) and board_task.default_mode in info.modes, name
        assert set(board_task.heads) <= set(info.heads), name
        assert set(board_task.datasets) <= set(info.datasets), name
        for dataset in board_task.datasets:
            assert info.dataset(dataset).partition in DATASETS.get(dataset).partitions, (name, dataset)
            assert protocol.metric(name, dataset) == info.headline(dataset), (name, dataset)
        assert board_task.scorer == info.scorer and scorer(info.scorer) is SCORERS.get(info.scorer), name


def test_one_default_board_per_kind_comes_from_the_protocol_files() -> None:
    from benchmark.board.store import default_board

    assert boards_dir() == Path("leaderboards") or boards_dir().is_dir()
    defaults = [BoardProtocol.read(path) for path in REPOSITORY_BOARDS if BoardProtocol.read(path).default]
    assert sorted(protocol.demo for protocol in defaults) == [False, True]
    assert default_board(demo=True) == next(p.board for p in defaults if p.demo)


def test_a_declaration_with_an_undeclared_default_is_refused() -> None:
    with pytest.raises(TaskDeclarationError, match="default mode 'paper'"):
        TaskInfo(**{**DECLARATION, "default_mode": "paper"})
    with pytest.raises(TaskDeclarationError, match=r"default heads \['mlp'\]"):
        TaskInfo(**{**DECLARATION, "default_heads": {"*": "mlp"}})


def test_a_declaration_without_a_cost_or_with_an_unknown_override_is_refused() -> None:
    TaskInfo(**DECLARATION)  # the base declaration is whole
    with pytest.raises(TaskDeclarationError, match="task 't' declares no cost"):
        TaskInfo(**{key: value for key, value in DECLARATION.items() if key != "cost"})
    with pytest.raises(TaskDeclarationError, match="lack the epoch budget 'max_epochs'"):
        TaskInfo(**{**DECLARATION, "override_keys": ("batch_size",)})
    with pytest.raises(TaskDeclarationError, match=r"no override 'epochs'; it accepts \['max_epochs'\]"):
        TaskInfo(**{**DECLARATION, "smoke": {"epochs": 1}})


def test_every_task_declares_its_cost_and_epoch_budget_from_its_protocol() -> None:
    from mmengine.config import Config

    from tasks.classification.protocol import PROTOCOL as PROBE
    from tasks.detection.protocol import PROTOCOL as DETECTION
    from tasks.segmentation.protocol import HYPERPARAMETERS_FILE, load_config

    infos = {info.name: info for info in all_tasks()}
    assert all(isinstance(info.cost, TaskCost) and info.epochs({}) == info.cost.max_epochs for info in infos.values())
    assert infos["classification"].epochs({}) == PROBE.max_epochs and infos["detection"].epochs({}) == DETECTION.max_epochs
    table = Config.fromfile(HYPERPARAMETERS_FILE).hyperparameters
    segmentation = infos["segmentation"].cost
    assert load_config("unet", "siim", 100).train_cfg.max_epochs == segmentation.max_epochs
    assert min(row.batch_size for rows in table.values() for row in rows.values()) == segmentation.batch_size
    for info in infos.values():
        assert info.epochs({"max_epochs": 3}) == 3 and "max_epochs" in info.override_keys, info.name


def test_every_dataset_headline_and_every_scored_metric_is_a_declared_spec() -> None:
    from benchmark.scoring import MetricSpec, metric_spec
    from benchmark.scoring.classification import METRICS as CLASSIFICATION
    from benchmark.scoring.detection import METRICS as DETECTION
    from benchmark.scoring.segmentation import METRICS as SEGMENTATION

    for info in all_tasks():
        for name in info.datasets:
            spec = info.headline(name)
            assert isinstance(spec, MetricSpec) and spec is scorer(info.scorer).metrics[spec.name], (info.name, name)
            assert spec.low < spec.high, (info.name, name)
    for name, reported in [("classification", CLASSIFICATION), ("detection", DETECTION), ("segmentation", SEGMENTATION)]:
        assert set(scorer(name).metrics) == {metric for metric, _ in reported.items()}, name
    with pytest.raises(KeyError, match="declares no metric 'loss'"):
        metric_spec("classification", "loss")


def test_a_task_without_a_cost_or_a_dataset_metric_and_a_board_with_an_unknown_override_are_refused(
        toy: tuple[Board, GridRequest], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """The three facts every task family brings: each missing one is an error naming the key and the known ones."""
    with pytest.raises(TaskDeclarationError, match="task 't' declares no cost"):
        TaskInfo(**{key: value for key, value in DECLARATION.items() if key != "cost"})

    board, request = toy
    path = board.root / "protocol.json"
    original = json.loads(path.read_text())
    data = json.loads(path.read_text())
    data["tasks"]["toy"]["datasets"]["covid"] = {"label": "COVID"}
    path.write_text(json.dumps(data))
    toy_info = toy_task.TASKS.get("toy")
    monkeypatch.setitem(toy_task.TASKS._entries, "toy", replace(toy_info, datasets={
        **toy_info.datasets, "covid": TaskDataset("classification")}))  # declared, but its scorer has no such dataset
    with pytest.raises(BoardError, match=r"board 'toy-board': tasks.toy.datasets.covid: task 'toy' declares dataset "
                                         r"'covid', but its scorer 'toy' gives it no declared headline metric: unknown "
                                         r"classification dataset 'covid'.*Known: chexpert, covidx, rsna"):
        check_board(BoardProtocol.read(path))
    monkeypatch.setitem(toy_task.TASKS._entries, "toy", toy_info)

    data = json.loads(json.dumps(original))
    data["tasks"]["toy"]["overrides"] = {"max_epochs": 2}
    path.write_text(json.dumps(data))
    check_board(BoardProtocol.read(path))  # the toy's vocabulary
    data["tasks"]["toy"]["overrides"] = {"train_cfg.max_epochs": 2}
    path.write_text(json.dumps(data))
    assert BoardProtocol.read(path).task("toy").overrides == {"train_cfg.max_epochs": 2}  # the board alone knows no task
    message = r"board 'toy-board': tasks.toy.overrides: task 'toy' has no override 'train_cfg.max_epochs'; it accepts \['max_epochs'\]"
    with pytest.raises(BoardError, match=message):
        check_board(BoardProtocol.read(path))
    with pytest.raises(BoardError, match=message):  # the grid checks the board before planning a cell
        run_grid(Board(board.root), request)
    assert main(["verify", "--board", str(board.root)]) == 2
    assert "has no override 'train_cfg.max_epochs'" in capsys.readouterr().err


def test_a_board_pinning_another_scorer_than_its_task_is_refused_and_so_are_records_of_another_scorer(
        toy: tuple[Board, GridRequest]) -> None:
    board, request = toy
    run_grid(board, request)
    path = board.root / "protocol.json"
    data = json.loads(path.read_text())
    data["tasks"]["toy"]["scorer"] = "classification"
    path.write_text(json.dumps(data))
    repinned = Board(board.root)
    with pytest.raises(BoardError, match=r"tasks.toy.scorer is 'classification', but task 'toy' is scored by 'toy'"):
        check_board(repinned.protocol)
    invalid: list[str] = []
    assert repinned.records(invalid) == [] and "scored by 'toy', but board 'toy-board' scores task 'toy' with " \
        "'classification'" in invalid[0]


def test_the_demo_boards_cells_are_planned_at_its_epoch_budget() -> None:
    from benchmark.costs import SplitCounts
    from benchmark.records import CellIdentity
    from benchmark.grid import Cell
    from benchmark.grid.planning import cell_costs, cell_estimate
    from tasks.registry import get_task

    board = Board(Path(__file__).resolve().parents[1] / "leaderboards" / "demo-mgca-cxr-v1")
    counts = SplitCounts(train=16, val=4, test=4)
    for task, dataset, head, budget in [("segmentation", "siim", "unet", 3), ("detection", "object_cxr", "yolov3", 3),
                                        ("classification", "rsna", "linear", 50)]:
        info = get_task(task)
        identity = CellIdentity(board.name, "n", "a" * 64, task, dataset, info.dataset(dataset).partition, head, 100, 0, 0,
                                "paper")
        cell = Cell(identity, Path("unused"), info, counts)
        work = cell_estimate(board, cell)
        batches = max(1, counts.train // info.cost.batch_size)
        assert (work.epochs, work.training_steps, work.training_samples) == (budget, budget * batches, budget * 16), task
        assert cell_costs(board, [cell])[identity] == work.cost(info.cost.head_cost)


@pytest.fixture()
def toy(tmp_path: Path) -> tuple[Board, GridRequest]:
    data = toy_task.write_toy_dataset(tmp_path / "data")
    board = Board(toy_task.write_toy_board(tmp_path / "boards"))
    request = GridRequest(backbones=(BackboneChoice("random_resnet18"),), data_dir=data, work_dir=tmp_path / "work",
                          cache_dir=tmp_path / "cache", progress=False, fractions=(100,))
    return board, request


def test_two_heads_and_two_modes_of_one_task_are_separate_cells(toy: tuple[Board, GridRequest]) -> None:
    board, request = toy
    for heads, modes in [(None, None), ({"toy": "mlp"}, None), ({None: "mlp"}, {None: "paper"})]:
        summary = run_grid(board, replace(request, heads=heads, modes=modes))
        assert (summary.ran, summary.failed) == (1, [])
    identities = {(r.identity.head, r.identity.mode) for r in board.records()}
    assert identities == {("linear", "cached"), ("mlp", "cached"), ("mlp", "paper")}
    assert len({r.identity.cell_key for r in board.records()}) == 3
    with pytest.raises(BoardError, match="no head 'unet'"):
        run_grid(board, replace(request, heads={"toy": "unet"}))
    with pytest.raises(BoardError, match="declares mode 'fast'"):
        run_grid(board, replace(request, modes={None: "fast"}))


def test_the_record_holds_exactly_what_the_score_command_prints(toy: tuple[Board, GridRequest],
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    board, request = toy
    run_grid(board, request)
    record = board.records()[0]
    capsys.readouterr()
    assert main(["score", "toy", "--predictions", str(board.artifact_file(record.predictions)), "--targets",
                 str(board.artifact_file(record.targets)), "--dataset", "rsna", "--n-resamples", "200"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["metrics"]["auroc"]["value"] == record.metrics["auroc"].value
    assert (printed["metrics"]["auroc"]["low"], printed["metrics"]["auroc"]["high"]) == (
        record.metrics["auroc"].ci_low, record.metrics["auroc"].ci_high)
    assert record.training == {} and "toy task" in record.notes and record.provenance["device"] == "cpu"


def test_a_cell_that_kills_its_interpreter_is_recorded_and_the_grid_goes_on(
        toy: tuple[Board, GridRequest], monkeypatch: pytest.MonkeyPatch) -> None:
    board, request = toy
    monkeypatch.setenv("TOY_CRASH", "10")
    summary = run_grid(board, replace(request, fractions=(10, 100), draws=(0,)))
    assert summary.ran == 1 and len(summary.failed) == 1
    failure = board.failures()[0]
    assert failure["identity"]["fraction"] == 10
    assert "killed by signal 6" in failure["error"] and "toy cell about to crash" in failure["error"]
    assert [r.identity.fraction for r in board.records()] == [100]


def test_a_cell_over_its_timeout_is_killed_and_recorded(toy: tuple[Board, GridRequest],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    board, request = toy
    monkeypatch.setenv("TOY_SLEEP", "30")
    summary = run_grid(board, replace(request, cell_timeout=2))
    assert len(summary.failed) == 1 and "exceeded the cell timeout of 2 s" in board.failures()[0]["error"]


def test_an_adapter_that_returns_no_task_result_fails_its_cell(toy: tuple[Board, GridRequest],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    board, request = toy
    broken = replace(toy_task.TASKS.get("toy"), adapter=lambda cell: {"metrics": {}})
    monkeypatch.setitem(toy_task.TASKS._entries, "toy", broken)
    summary = run_grid(board, replace(request, isolate=False))
    assert len(summary.failed) == 1 and "not a TaskResult" in board.failures()[0]["error"]


def test_a_board_pinning_another_task_version_is_refused(toy: tuple[Board, GridRequest]) -> None:
    board, request = toy
    path = board.root / "protocol.json"
    data = json.loads(path.read_text())
    data["tasks"]["toy"]["version"] = 2
    path.write_text(json.dumps(data))
    with pytest.raises(GridError, match="pins version 2"):
        run_grid(Board(board.root), request)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(colour="red"), r"unknown key\(s\) \['colour'\]"),
    (lambda d: d.pop("preparation_version"), r"missing key\(s\) \['preparation_version'\]"),
    (lambda d: d["tasks"]["toy"].pop("version"), r"tasks.toy: missing key\(s\) \['version'\]"),
    (lambda d: d["tasks"]["toy"].update(default_mode="fast"), "not among its modes"),
    (lambda d: d["tasks"]["toy"].pop("scorer"), r"tasks.toy: missing key\(s\) \['scorer'\]"),
])
def test_a_board_protocol_is_read_strictly(toy: tuple[Board, GridRequest], change, message: str) -> None:
    board, _ = toy
    path = board.root / "protocol.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(BoardError, match=message):
        BoardProtocol.read(path)


def test_records_of_the_upgraded_schema_replace_version_1_records(toy: tuple[Board, GridRequest]) -> None:
    board, request = toy
    run_grid(board, request)
    path = next((board.root / "results").rglob("*.json"))
    data = json.loads(path.read_text())
    data["schema_version"] = 1
    path.write_text(json.dumps(data))
    invalid: list[str] = []
    assert board.records(invalid) == [] and "version-1 records" in invalid[0]
    summary = run_grid(board, request)
    assert summary.ran == 0 and "version-1 records" in summary.invalid[0]  # reported, never silently redone
    path.parent.parent.parent.joinpath("results").rename(path.parent.parent.parent / "old-results")
    assert run_grid(board, request).ran == 1  # re-created, as the message says
    assert isinstance(RunRecord.read(path), RunRecord)


def test_a_board_that_does_not_take_the_default_head_gets_its_first_head(toy: tuple[Board, GridRequest]) -> None:
    board, request = toy
    path = board.root / "protocol.json"
    data = json.loads(path.read_text())
    data["tasks"]["toy"].update(heads=["mlp"], fractions=[10], draws=[1])
    path.write_text(json.dumps(data))
    assert run_grid(Board(board.root), replace(request, fractions=None)).ran == 1
    (record,) = Board(board.root).records()
    assert (record.identity.head, record.identity.fraction, record.identity.draw) == ("mlp", 10, 1)


@pytest.mark.parametrize("seeds", [[3], [], 0, [0, 0], [True], ["0"]])
def test_a_task_entrys_seeds_must_be_a_subset_of_the_boards(tmp_path: Path, seeds) -> None:
    path = toy_task.write_toy_board(tmp_path, seeds=(0, 1, 2)) / "protocol.json"
    data = json.loads(path.read_text())
    data["tasks"]["toy"]["seeds"] = seeds
    path.write_text(json.dumps(data))
    with pytest.raises(BoardError) as refused:
        BoardProtocol.read(path)
    assert str(refused.value) == (f"{path}: tasks.toy.seeds={seeds!r}: expected a non-empty list of distinct seeds "
                                  "among the board's seeds [0, 1, 2]")


def test_a_task_entrys_seeds_narrow_the_boards_and_the_request_overrides_them(toy: tuple[Board, GridRequest]) -> None:
    from benchmark.grid import GridSummary, plan_grid

    _, request = toy
    folder = toy_task.write_toy_board(request.work_dir.parent / "seeded", seeds=(0, 1, 2))
    data = json.loads((folder / "protocol.json").read_text())

    def planned_seeds(task_seeds: list[int] | None, seeds: tuple[int, ...] | None = None) -> list[int]:
        data["tasks"]["toy"].pop("seeds", None)
        data["tasks"]["toy"].update({} if task_seeds is None else {"seeds": task_seeds})
        (folder / "protocol.json").write_text(json.dumps(data))
        cells = plan_grid(Board(folder), replace(request, seeds=seeds), GridSummary())
        return [item.cell.identity.seed for item in cells]

    assert planned_seeds(None) == [0, 1, 2]  # the board's
    assert planned_seeds([2, 0]) == [2, 0]  # the entry's, like its fractions and draws
    assert planned_seeds([2, 0], seeds=(1,)) == [1]  # --seeds, like --draws


def test_a_task_that_trains_nothing_is_planned_once_per_dataset_on_a_board_of_three_seeds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """mgca-cxr-v1 (seeds 0, 1, 2) runs zero-shot at seed 0 only; without its entry's ``seeds`` the board is refused."""
    from benchmark.backbones import build_backbone
    from benchmark.datasources import SizesSource
    from benchmark.grid import GridSummary
    from benchmark.grid.planning import plan_cells
    from tasks.registry import TASKS, get_task

    info = get_task("zeroshot")
    assert not info.seeded
    monkeypatch.setitem(TASKS._entries, "zeroshot", replace(info, requires=None))  # a backbone without a text tower
    sizes = {f"{partition}/{split}.txt": 5 for partition in ("classification", "holdout_5x200")
             for split in ("train", "val", "test")}
    real = Path(__file__).resolve().parents[1] / "leaderboards" / "mgca-cxr-v1"
    board = Board(real)
    assert board.protocol.seeds == (0, 1, 2) and board.protocol.task("zeroshot").seeds == (0,)
    request = GridRequest(backbones=(BackboneChoice("random_resnet18"),), data_dir=tmp_path / "data",
                          work_dir=tmp_path / "work", cache_dir=tmp_path / "cache", tasks=("zeroshot",))
    loaded = build_backbone("random_resnet18")

    def plan(board: Board, request: GridRequest) -> list[tuple[str, int, int, int]]:
        cells = plan_cells(board, request, loaded, GridSummary(), lambda name: SizesSource(tmp_path / name, sizes))
        return [(c.identity.dataset, c.identity.fraction, c.identity.draw, c.identity.seed) for c in cells]

    once = [(dataset, 100, 0, 0) for dataset in board.protocol.task("zeroshot").datasets]
    assert len(once) == 3 and plan(board, request) == once
    assert plan(board, replace(request, seeds=(1, 2))) == once  # --seeds is a head's: nothing here takes one
    copy = tmp_path / "boards" / "mgca-cxr-v1"
    copy.mkdir(parents=True)
    data = json.loads((real / "protocol.json").read_text())
    del data["tasks"]["zeroshot"]["seeds"]
    (copy / "protocol.json").write_text(json.dumps(data))
    with pytest.raises(BoardError, match=r"board 'mgca-cxr-v1': tasks.zeroshot plans seeds \[0, 1, 2\], but task "
                                         r"'zeroshot' uses no seed .*3 identical cells per column; give the entry one "
                                         r"seed, \"seeds\": \[0\]"):
        plan(Board(copy), request)
