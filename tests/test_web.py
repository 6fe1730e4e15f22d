"""The dashboard in a real browser: Debian's Chromium driven by pytest-playwright, against
the real app (uvicorn on loopback) over a real SQLite file seeded with pairs and jobs.

Every page is opened with all traffic to hosts other than 127.0.0.1 aborted (and recorded:
none may be tried) and the console watched for errors; a screenshot of each page goes to
the test's output folder (test-results/ by default, pytest-playwright's --output).
Without /usr/bin/chromium the tests skip, or fail when CI is set. No browser is downloaded.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.conftest import in_ci
from tests.worker_helpers import free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
API_KEY = "web-test-key"
REPO = Path(__file__).resolve().parent.parent
PAGES = {
    "overview": "/",
    "estimate": "/estimate",
    "measured": "/measured",
    "jobs": "/jobs",
    "training": "/training",
    "table2": "/table2",
}
# Server-side 4xx answers the browser logs as "Failed to load resource" (expected only
# where a test sends bad input on purpose).
RESOURCE_4XX = "Failed to load resource: the server responded with a status of 4"

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict[str, Any]:
    """pytest-playwright's launch arguments: Debian's Chromium, never a downloaded one."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found (apt-get install chromium)"
        if in_ci():
            pytest.fail(f"Chromium missing while CI is set: {reason}", pytrace=False)
        pytest.skip(reason)
    return {"executable_path": str(CHROMIUM), "args": CHROMIUM_ARGS, "headless": True}


# --- The seeded database and the server ---------------------------------------------------


@dataclass
class Seeded:
    url: str
    db_path: Path
    a100_pairs: int
    cpu_pairs: int
    running_job: int
    failed_job: int
    data_dir: Path
    jobs: list[int] = field(default_factory=list)
    train_jobs: list[int] = field(default_factory=list)
    running_train: int = 0


def _ber_curve(detector: str, offset_db: float) -> list[dict[str, Any]]:
    """A waterfall-shaped BER curve with Wilson-like 95% bounds (seeded, not simulated)."""
    rows = []
    for ebn0 in (0.0, 2.0, 4.0, 6.0, 8.0):
        bits = 100_000
        errors = max(3, int(bits * 0.2 * 10 ** (-(ebn0 + offset_db) / 4)))
        ber = errors / bits
        spread = 1.96 * (ber * (1 - ber) / bits) ** 0.5
        rows.append(
            {
                "detector": detector,
                "ebn0_db": ebn0,
                "bits": bits,
                "bit_errors": errors,
                "ber": ber,
                "ci_low": max(ber - spread, ber / 10),
                "ci_high": ber + spread,
                "symbols": bits // 2,
                "symbol_errors": errors,
                "messages": bits // 4,
                "message_errors": errors,
                "tx_energy": 1.0,
            }
        )
    return rows


def _seed_training(session: Any, data_dir: Path) -> tuple[list[int], int]:
    """Two finished train jobs (BER curves of the model and two baselines, a loss history
    file where the worker writes it) and one in its train phase."""
    from sqlalchemy import update

    from app.db.models import Job, utcnow
    from app.services import jobs, training
    from estimator.spec import FamilySpec

    spec = FamilySpec(family="tanh-bae", k=2, nt=2, ht=16, hr=32, batch=64)
    ids = []
    for index in range(2):
        job = jobs.submit(session, spec=spec, kind="train", mode="paper", total_steps=200)
        now = utcnow()
        session.execute(
            update(Job)
            .where(Job.id == job.id)
            .values(status="succeeded", progress=1.0, phase="evaluate", step=200,
                    loss=0.05, started_at=now, finished_at=now)
        )  # fmt: skip
        rows = _ber_curve("tanh-bae", 1.0 + index) + _ber_curve("zf", 0.0) + _ber_curve("mmse", 0.5)
        training.store_ber(session, job.id, rows)
        folder = training.job_dir(data_dir, job.id)
        folder.mkdir(parents=True)
        loss = [[step, 1.0 / (1 + step / (20 + 10 * index))] for step in range(0, 201, 10)]
        (folder / training.HISTORY_FILE).write_text(json.dumps({"loss": loss}))
        ids.append(job.id)
    running = jobs.submit(session, spec=spec, kind="train", mode="paper", total_steps=1000)
    session.execute(
        update(Job)
        .where(Job.id == running.id)
        .values(status="running", progress=0.2, phase="train", step=120, loss=0.42,
                lease_owner="worker-test")
    )  # fmt: skip
    session.commit()
    return ids, running.id


def _seed(db_path: Path, data_dir: Path) -> Seeded:
    from sqlalchemy import update

    from app.db.migrate import upgrade
    from app.db.models import Job, Measurement, utcnow
    from app.db.session import make_engine, make_sessionmaker
    from app.services import estimates, jobs
    from estimator.spec import FamilySpec

    url = f"sqlite:///{db_path}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        # a100-80gb: three measured pairs (one with an NVML reading) and one OOM run.
        a100 = [(2, 2, 1.04, None), (4, 2, 0.97, 2**30), (6, 2, 1.10, None), (6, 4, None, None)]
        for k, nt, ratio, nvml in a100:
            stored = estimates.get_or_create(session, FamilySpec(family="bae", k=k, nt=nt), "paper")
            total = stored.result["total_bytes"]
            measured = None if ratio is None else int(total * ratio)
            session.add(
                Measurement(
                    estimate_id=stored.id,
                    device="a100-80gb",
                    measured_peak_bytes=None if measured is None else str(measured),
                    nvml_peak_bytes=None if nvml is None else measured + nvml,
                    status="ok" if measured is not None else "oom",
                    framework_versions={"tensorflow": "2.21.0"},
                    created_at=utcnow(),
                )
            )
        # cpu: more pairs than the A100, yet the page opens on a100-80gb.
        for batch in (64, 128, 256, 512, 1024):
            spec = FamilySpec(family="bae", k=2, nt=2, ht=16, hr=32, batch=batch)
            stored = estimates.get_or_create(session, spec, "framework")
            session.add(
                Measurement(
                    estimate_id=stored.id,
                    device="cpu",
                    measured_peak_bytes=str(int(stored.result["total_bytes"] * 1.01)),
                    status="ok",
                    framework_versions={"tensorflow": "2.21.0"},
                    created_at=utcnow(),
                )
            )
        session.commit()
        tiny = FamilySpec(family="bae", k=2, nt=2, ht=16, hr=32, batch=64)
        ids = [jobs.submit(session, spec=tiny, mode="framework").id for _ in range(4)]
        done, failed, running, _queued = ids
        now = utcnow()
        for job_id, values in (
            (done, {"status": "succeeded", "progress": 1.0, "started_at": now, "finished_at": now}),
            (
                failed,
                {
                    "status": "failed",
                    "progress": 1.0,
                    "error": "ResourceExhaustedError: seeded failure for the dashboard test",
                    "attempts": 3,
                    "finished_at": now,
                },
            ),
            (running, {"status": "running", "progress": 0.3, "lease_owner": "worker-test"}),
        ):
            session.execute(update(Job).where(Job.id == job_id).values(**values))
        session.commit()
        _seed_compression(session)
        train_ids, running_train = _seed_training(session, data_dir)
    engine.dispose()
    return Seeded(
        url, db_path, 4, 5, running, failed, data_dir, ids + train_ids + [running_train],
        train_ids, running_train,
    )  # fmt: skip


COMPRESSION_ROWS = 3  # what _seed_compression stores: two model sizes and a latency


def _seed_compression(session: Any) -> None:
    """cpu: two model sizes of CsiNet 1/64 (the estimates they test) and one latency."""
    from app.services import estimates, measurements
    from estimator.families import csinet

    stored = estimates.get_or_create(session, csinet("1/64"), "paper")
    assert stored.id is not None
    rows = [
        {"quantity": "model_size", "measured_value": 563_104, "estimated_value": 562_776,
         "detail": {"file": "tflite/fp32", "size": "file"}},
        {"quantity": "model_size", "measured_value": 150_000, "estimated_value": 141_000,
         "detail": {"file": "tflite/int8", "size": "file"}},
        {"quantity": "latency", "measured_value": "812.5", "estimated_value": None,
         "detail": {"file": "tflite/fp32", "delegate": "xnnpack", "runs": 200}},
    ]  # fmt: skip
    assert len(rows) == COMPRESSION_ROWS
    measurements.store_quantities(
        session, stored.id, rows, device="cpu", framework_versions={"tensorflow": "2.21.0"}
    )
    session.commit()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    folder = tmp_path_factory.mktemp("web")
    return _seed(folder / "phymem.db", folder / "data")


@pytest.fixture(scope="module")
def server(seeded: Seeded, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real app under uvicorn on a free loopback port."""
    port = free_port()
    log = (tmp_path_factory.mktemp("web-log") / "server.log").open("wb")
    env = dict(os.environ)
    env.update(
        PHYMEM_DATABASE_URL=seeded.url,
        PHYMEM_DATA_DIR=str(seeded.data_dir),
        PHYMEM_API_KEY=API_KEY,
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
    )
    command = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start: {log.name}") from None
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


# --- The page under watch -----------------------------------------------------------------


@dataclass
class Watched:
    page: Any
    console_errors: list[str]
    page_errors: list[str]
    outside: list[str]
    requests: list[str]

    def assert_clean(self, allow: tuple[str, ...] = ()) -> None:
        unexpected = [e for e in self.console_errors if not e.startswith(allow or ("\0",))]
        assert unexpected == [], unexpected
        assert self.page_errors == [], self.page_errors
        assert self.outside == [], f"requests that tried to leave loopback: {self.outside}"


@pytest.fixture
def watched(page: Any) -> Watched:
    page.set_default_timeout(30_000)
    state = Watched(page, [], [], [], [])

    def on_console(message: Any) -> None:
        if message.type == "error":
            state.console_errors.append(message.text)

    def route(route: Any) -> None:
        url = route.request.url
        state.requests.append(url)
        if urlparse(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            state.outside.append(url)
            route.abort()

    page.on("console", on_console)
    page.on("pageerror", lambda error: state.page_errors.append(str(error)))
    page.context.route("**/*", route)
    return state


def shot(watched: Watched, output_path: str, name: str) -> None:
    Path(output_path).mkdir(parents=True, exist_ok=True)
    watched.page.screenshot(path=str(Path(output_path) / f"{name}.png"), full_page=True)


# --- Tests --------------------------------------------------------------------------------


def test_every_page_loads_clean_with_plotly_from_the_app(
    server: str, seeded: Seeded, watched: Watched, output_path: str
) -> None:
    page = watched.page
    for name, path in PAGES.items():
        page.goto(server + path)
        page.wait_for_load_state("networkidle")
        assert page.locator("header.topbar nav a[aria-current='page']").count() == 1, name
        if name in ("estimate", "measured", "training"):
            assert page.evaluate("typeof Plotly") == "object", name
        shot(watched, output_path, name)
    watched.assert_clean()
    plotly = [url for url in watched.requests if "/static/plotly-" in url]
    assert plotly and all(url.startswith(server) for url in plotly)

    # Overview: the counts are the database's; the training page says what to do.
    overview = get_json(f"{server}/v1/overview")
    page.goto(server + "/")
    assert page.locator("#count-measurements").inner_text() == str(overview["measurements"])
    # every stored measurement counts, whatever its quantity
    assert overview["measurements"] == seeded.a100_pairs + seeded.cpu_pairs + COMPRESSION_ROWS
    assert page.locator("#latest-jobs tbody tr").count() == min(10, len(seeded.jobs))
    # Table 2: both of the paper's misprints are marked as such.
    page.goto(server + "/table2")
    assert page.locator("#table2 td.mark-bad").count() == 2
    assert "misprint" in page.locator("td[data-column=ae][data-k='4'][data-nt='64']").inner_text()


def test_estimate_form_gives_table2_headline_and_layers(
    server: str, watched: Watched, output_path: str
) -> None:
    page = watched.page
    page.goto(server + "/estimate")
    page.select_option("#f-family", "ae")
    page.fill("#f-k", "6")
    page.fill("#f-nt", "4")
    page.fill("#f-batch", "2048")
    page.select_option("#f-mode", "paper")
    page.select_option("#f-device", "a100-80gb")
    page.locator("#f-nt").press("Enter")  # the keyboard submits the form
    page.locator("#estimate-status", has_text="done").wait_for()
    assert page.locator("#total-gib").inner_text() == "800.9"
    assert "does not fit" in page.locator("#verdict").inner_text()
    expected = json.loads(
        urllib.request.urlopen(
            urllib.request.Request(
                f"{server}/v1/estimates",
                data=json.dumps({"family": "ae", "k": 6, "nt": 4, "mode": "paper"}).encode(),
                headers={"content-type": "application/json"},
            )
        ).read()
    )
    rows = page.locator("#layers-table tbody tr")
    assert rows.count() == len(expected["layers"]) > 0
    assert rows.nth(0).locator("td").nth(1).inner_text() == expected["layers"][0]["name"]
    assert page.locator("#breakdown-table tbody tr").count() == 6
    curve = "document.getElementById('curve-chart').data.map(t => t.name)"
    assert page.evaluate(curve)[:1] == ["estimate"] and len(page.evaluate(curve)) == 2
    assert "Not even batch 1 fits" in page.locator("#max-batch").inner_text()
    shot(watched, output_path, "estimate-ae-k6-nt4")

    # The BAE fits: its curve marks the largest batch, as POST /v1/max-batch answers it.
    page.select_option("#f-family", "bae")
    page.click("button[type=submit]")
    page.locator("#verdict", has_text="fits").wait_for()
    page.wait_for_function("document.getElementById('curve-chart').data.length === 3")
    largest = json.loads(
        urllib.request.urlopen(
            urllib.request.Request(
                f"{server}/v1/max-batch",
                data=json.dumps(
                    {"device": "a100-80gb", "mode": "paper",
                     "spec": {"family": "bae", "k": 6, "nt": 4}}
                ).encode(),
                headers={"content-type": "application/json"},
            )
        ).read()
    )["max_batch"]  # fmt: skip
    assert page.evaluate(curve)[2] == f"max batch {largest}"
    shot(watched, output_path, "estimate-bae-k6-nt4")

    # The default (framework) mode: the page shows what the API answers for it.
    page.select_option("#f-mode", "framework")
    page.click("button[type=submit]")
    page.locator("#total-detail", has_text="framework mode").wait_for()
    framework = json.loads(
        urllib.request.urlopen(
            urllib.request.Request(
                f"{server}/v1/estimates",
                data=json.dumps({"family": "bae", "k": 6, "nt": 4}).encode(),
                headers={"content-type": "application/json"},
            )
        ).read()
    )
    assert page.locator("#total-gib").inner_text() == f"{framework['total_gib']:.4g}"
    assert page.locator("#layers-table tbody tr").count() == len(framework["layers"])
    watched.assert_clean()


def test_bad_spec_shows_the_problem_beside_the_field(
    server: str, watched: Watched, output_path: str
) -> None:
    page = watched.page
    page.goto(server + "/estimate")
    page.fill("#f-k", "0")
    page.click("button[type=submit]")
    error = page.locator("#err-k")
    error.wait_for()
    page.wait_for_function("document.getElementById('err-k').textContent.length > 0")
    assert "greater than or equal to 1" in error.inner_text()
    assert "invalid" in (page.locator("#f-k").get_attribute("class") or "")
    assert page.locator("#estimate-result").is_hidden()

    page.check("input[name=source][value=text]")
    page.fill("#f-text", "family: ae\nk: [6\n")
    page.click("button[type=submit]")
    page.wait_for_function("document.getElementById('err-text').textContent.length > 0")
    assert "not valid YAML at line" in page.locator("#err-text").inner_text()
    page.fill("#f-text", '{"family": "ae", "k": 6, "nt": 4, "colour": "red"}')
    page.click("button[type=submit]")
    page.wait_for_function("document.getElementById('err-text').textContent.includes('colour')")
    shot(watched, output_path, "estimate-bad-spec")
    watched.assert_clean(allow=(RESOURCE_4XX,))
    assert len(watched.console_errors) == 3  # the three 422 answers, nothing else


def test_estimate_vs_measured_matches_the_api(
    server: str, seeded: Seeded, watched: Watched, output_path: str
) -> None:
    page = watched.page
    page.goto(server + "/measured")
    assert page.locator("#m-device").input_value() == "a100-80gb"  # preferred over cpu's 5
    rows = page.locator("#pairs-table tbody tr")
    rows.first.wait_for()
    api = get_json(f"{server}/v1/measurements?device=a100-80gb")["items"]
    assert len(api) == seeded.a100_pairs == rows.count()

    groups = page.evaluate(
        """() => {
          const gd = document.getElementById('bars-chart');
          return [...new Set(gd.data.filter(t => t.type === 'bar').flatMap(t => t.x))].length;
        }"""
    )
    assert groups == len(api)
    traces = page.evaluate("document.getElementById('bars-chart').data.map(t => t.name)")
    assert "measured (allocator peak)" in traces and "NVML reading" in traces
    assert sum(name.startswith("estimate: ") for name in traces) == 6

    for row, item in zip(rows.all(), api, strict=True):
        cells = [cell.inner_text() for cell in row.locator("td").all()]
        assert cells[0] == str(item["id"])
        assert cells[3] == str(item["batch"])
        assert cells[4] == f"{item['estimate_bytes'] / 2**30:.4f}"
        if item["status"] == "oom":
            assert item["measured_bytes"] is None and cells[5] == "OOM"
            assert cells[7] == "–"
        else:
            assert cells[5] == f"{item['measured_bytes'] / 2**30:.4f}"
            assert cells[7] == f"{item['error_pct']:.2f}"
        assert cells[8] == item["status"]
    ok = [abs(i["error_pct"]) for i in api if i["error_pct"] is not None]
    assert page.locator("#sum-max").inner_text() == f"{max(ok):.2f}%"
    annotations = page.evaluate("document.getElementById('bars-chart').layout.annotations")
    assert [a["text"] for a in annotations] == ["OOM"]
    shot(watched, output_path, "measured-a100")

    page.select_option("#m-device", "cpu")
    page.wait_for_function(
        f"document.querySelectorAll('#pairs-table tbody tr').length === {seeded.cpu_pairs}"
    )
    page.select_option("#m-mode", "paper")  # cpu pairs are all framework-mode
    page.locator("#measured-empty", has_text="No measurements for cpu").wait_for()
    assert "phymem profile" in page.locator("#measured-empty").inner_text()
    watched.assert_clean()


def test_estimate_vs_measured_by_quantity(
    server: str, seeded: Seeded, watched: Watched, output_path: str
) -> None:
    page = watched.page
    page.goto(server + "/measured?device=cpu&quantity=model_size")
    rows = page.locator("#pairs-table tbody tr")
    rows.first.wait_for()
    api = get_json(f"{server}/v1/measurements?device=cpu&quantity=model_size")["items"]
    assert len(api) == 2 == rows.count()
    heads = page.locator("#pairs-table thead th").all_inner_texts()
    assert heads[4:6] == ["Estimate", "Measured"] and heads[-1] == "Quantity"
    for row, item in zip(rows.all(), api, strict=True):
        cells = [cell.inner_text() for cell in row.locator("td").all()]
        expected = (str(item["id"]), item["detail"]["file"], "model_size")
        assert (cells[0], cells[2], cells[-1]) == expected
        assert cells[4] == f"{item['estimated_value'] / 1024:.2f}"
        assert cells[5] == f"{item['measured_value'] / 1024:.2f}"
        assert cells[7] == f"{item['error_pct']:.2f}"
    worst = max(abs(item["error_pct"]) for item in api)
    assert page.locator("#sum-max").inner_text() == f"{worst:.2f}%"
    traces = page.evaluate("document.getElementById('bars-chart').data.map(t => t.name)")
    assert traces == ["estimate", "measured (model size)"]
    shot(watched, output_path, "measured-model-size")

    page.select_option("#m-quantity", "latency")
    page.wait_for_function(
        "[...document.querySelectorAll('#pairs-table tbody tr td:last-child')]"
        ".map(td => td.textContent).join() === 'latency'"
    )
    cells = page.locator("#pairs-table tbody tr td").all_inner_texts()
    assert (cells[3], cells[4], cells[5], cells[6]) == ("xnnpack", "–", "812.5", "µs")
    assert "no estimate" in page.locator("#calibration-note").inner_text()

    page.select_option("#m-quantity", "training_peak")
    page.wait_for_function(
        f"document.querySelectorAll('#pairs-table tbody tr').length === {seeded.cpu_pairs}"
    )
    assert page.locator("#pairs-table thead th").first.inner_text() == "#"
    assert "Batch" in page.locator("#pairs-table thead").inner_text()
    watched.assert_clean()


def test_running_job_progress_updates_without_reload(
    server: str, seeded: Seeded, watched: Watched, output_path: str
) -> None:
    page = watched.page
    page.goto(server + "/jobs")
    row = page.locator(f"#jobs-table tr[data-job='{seeded.running_job}']")
    row.locator(".pct", has_text="30%").wait_for()
    page.evaluate("window.__noReload = true")
    with sqlite3.connect(seeded.db_path) as connection:
        connection.execute("UPDATE jobs SET progress = 0.65 WHERE id = ?", (seeded.running_job,))
    row.locator(".pct", has_text="65%").wait_for(timeout=15_000)
    assert page.evaluate("window.__noReload") is True
    failed = page.locator(f"#jobs-table tr[data-job='{seeded.failed_job}']")
    assert "seeded failure" in failed.inner_text()
    shot(watched, output_path, "jobs")

    page.goto(f"{server}/jobs/{seeded.failed_job}")
    page.locator("#job-error", has_text="ResourceExhaustedError").wait_for()
    shot(watched, output_path, "job-failed")

    # Submitting needs the key; it lives in this tab's sessionStorage only.
    page.goto(server + "/jobs")
    assert page.locator("#submit-button").is_disabled()
    page.fill("#s-key", API_KEY)
    assert page.evaluate("sessionStorage.getItem('phymem-api-key')") == API_KEY
    assert page.evaluate("localStorage.length") == 0
    page.click("#submit-button")
    link = page.locator("#submit-status a")
    link.wait_for()
    job_id = int(link.inner_text().removeprefix("job #"))
    assert get_json(f"{server}/v1/jobs/{job_id}")["status"] == "queued"
    page.locator(f"#jobs-table tr[data-job='{job_id}']").wait_for()
    watched.assert_clean()


def test_training_results_overlay_two_jobs(
    server: str, seeded: Seeded, watched: Watched, output_path: str
) -> None:
    page = watched.page
    first, second = seeded.train_jobs
    page.goto(f"{server}/training?job={first}")
    page.locator("#ber-table tbody tr").first.wait_for()
    ber = get_json(f"{server}/v1/jobs/{first}/ber")["rows"]
    curves = "document.getElementById('ber-chart').data"
    assert page.evaluate(f"{curves}.map(t => t.name)") == [
        f"#{first} {d}" for d in ("tanh-bae", "zf", "mmse")
    ]
    assert page.evaluate("document.getElementById('ber-chart').layout.yaxis.type") == "log"
    bars = page.evaluate(f"{curves}[0].error_y")
    model = [row for row in ber if row["detector"] == "tanh-bae"]
    assert bars["array"] == pytest.approx([r["ci_high"] - r["ber"] for r in model])
    assert bars["arrayminus"] == pytest.approx([r["ber"] - r["ci_low"] for r in model])
    assert page.locator("#ber-table tbody tr").count() == len(ber)
    history = get_json(f"{server}/v1/jobs/{first}/history")["loss"]
    assert page.evaluate("document.getElementById('loss-chart').data[0].y") == pytest.approx(
        [point["loss"] for point in history]
    )

    page.select_option("#t-job-b", str(second))
    page.wait_for_function(f"{curves}.length === 6")
    overlaid = len(ber) + len(get_json(f"{server}/v1/jobs/{second}/ber")["rows"])
    assert page.locator("#ber-table tbody tr").count() == overlaid
    assert page.evaluate("document.getElementById('loss-chart').data.length") == 2
    shot(watched, output_path, "training-overlay")

    # A running train job's phase, step and loss update on its page without a reload.
    page.goto(f"{server}/jobs/{seeded.running_train}")
    page.locator("#job-step", has_text="120 / 1000").wait_for()
    assert page.locator("#job-phase").inner_text() == "train"
    page.evaluate("window.__noReload = true")
    with sqlite3.connect(seeded.db_path) as connection:
        connection.execute(
            "UPDATE jobs SET step = 480, loss = 0.125, progress = 0.5 WHERE id = ?",
            (seeded.running_train,),
        )
    page.locator("#job-step", has_text="480 / 1000").wait_for(timeout=15_000)
    assert page.locator("#job-loss").inner_text() == "0.12500"
    assert page.evaluate("window.__noReload") is True
    shot(watched, output_path, "job-training")
    watched.assert_clean()
