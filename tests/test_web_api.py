"""The dashboard's JSON aggregates and assets over HTTP, on SQLite and PostgreSQL (`backend`).

The browser tests (test_web.py) check what the pages draw; these check the numbers the
pages are given, against values computed here from the stored rows.
"""

from __future__ import annotations

import gzip
import sys
from statistics import median
from typing import Any

from sqlalchemy import create_engine, select, update
from sqlalchemy.orm import Session

from app.db.models import Job, Measurement, utcnow
from estimator.engine import cached_plan
from estimator.spec import FamilySpec
from estimator.table2 import reproduce


def _pairs(client: Any, db_url: str) -> list[tuple[int, int | None]]:
    """Three ok pairs and one OOM on a100-80gb, two ok pairs on cpu; (estimate, measured)."""
    engine = create_engine(db_url)
    stored = []
    with Session(engine) as session:
        for index, (k, device, ratio) in enumerate(
            [(2, "a100-80gb", 1.1), (4, "a100-80gb", 0.8), (6, "a100-80gb", 1.02),
             (8, "a100-80gb", None), (2, "cpu", 1.0), (4, "cpu", 1.0)]
        ):  # fmt: skip
            body = client.post("/v1/estimates", json={"family": "bae", "k": k, "nt": 2}).json()
            measured = None if ratio is None else int(body["total_bytes"] * ratio)
            session.add(
                Measurement(
                    estimate_id=body["id"],
                    device=device,
                    measured_peak_bytes=None if measured is None else str(measured),
                    status="ok" if measured else "oom",
                    created_at=utcnow(),
                )
            )
            if device == "a100-80gb":
                stored.append((body["total_bytes"], measured))
            assert index < 6
        session.commit()
    engine.dispose()
    return stored


def test_summary_and_overview_count_what_is_stored(client: Any, db_url: str) -> None:
    stored = _pairs(client, db_url)
    summary = client.get("/v1/measurements/summary", params={"device": "a100-80gb"}).json()
    errors = [abs((e - m) * 100 / m) for e, m in stored if m]
    assert summary["count"] == 4 and summary["by_status"] == {"ok": 3, "oom": 1, "failed": 0}
    assert summary["median_abs_error_pct"] == round(median(errors), 3)
    assert summary["max_abs_error_pct"] == round(max(errors), 3)
    assert sum(b["count"] for b in summary["histogram"]) == 3
    assert summary["devices"] == {"a100-80gb": 4, "cpu": 2}
    assert summary["default_device"] == "a100-80gb"
    assert summary["calibration"]["pairs"] == 3  # framework mode: the pairs' own
    paper = client.get("/v1/measurements/summary", params={"device": "a100-80gb", "mode": "paper"})
    assert paper.json()["count"] == 0 and paper.json()["calibration"]["source"] == "prior"
    cpu = client.get("/v1/measurements/summary", params={"device": "cpu"}).json()
    assert cpu["count"] == 2 and cpu["calibration"] is not None

    listed = client.get("/v1/measurements", params={"device": "a100-80gb"}).json()["items"]
    assert [i["estimate_bytes"] for i in listed] == [e for e, _ in stored]
    assert all(sum(i["breakdown"].values()) == i["estimate_bytes"] for i in listed)
    assert client.get("/v1/measurements", params={"mode": "paper"}).json()["items"] == []

    from app.services import jobs

    with client.app.state.sessionmaker() as session:  # queued as POST /v1/jobs queues them
        spec = FamilySpec(family="bae", k=2, nt=2, ht=16, hr=32, batch=64)
        ids = [jobs.submit(session, spec=spec).id for _ in range(3)]
        session.execute(
            update(Job)
            .where(Job.id == ids[0])
            .values(status="running", lease_owner="w1",
                    lease_expires_at=utcnow().replace(year=2999))
        )  # fmt: skip
        session.commit()
    overview = client.get("/v1/overview").json()
    assert overview["measurements"] == 6
    assert overview["measurements_by_device"] == {"a100-80gb": 4, "cpu": 2}
    assert overview["jobs"] == 3 and overview["jobs_by_status"]["queued"] == 2
    assert [j["id"] for j in overview["latest_jobs"]] == ids[::-1]
    assert overview["worker"]["alive"] is True and overview["worker"]["lease_owners"] == ["w1"]
    assert overview["specs"] == 5 and overview["estimates"] == 5  # cpu's specs are a100's


def _pairs_beyond_double_range(client: Any, db_url: str, measured: list[str]) -> int:
    """Pairs on device "odd" for a paper-mode estimate of over 308 digits; its byte count."""
    body = client.post("/v1/estimates", json={"family": "ae", "k": 8, "nt": 200, "mode": "paper"})
    huge: int = body.json()["total_bytes"]
    assert len(str(huge)) > 308
    engine = create_engine(db_url)
    with Session(engine) as session:
        for peak in measured:
            session.add(
                Measurement(estimate_id=body.json()["id"], device="odd", status="ok",
                            measured_peak_bytes=peak, created_at=utcnow())
            )  # fmt: skip
        session.commit()
    engine.dispose()
    return huge


def test_summary_of_a_pair_beyond_double_range_is_exact(client: Any, db_url: str) -> None:
    _pairs_beyond_double_range(client, db_url, ["3", "0"])  # a zero peak has no error
    summary = client.get("/v1/measurements/summary", params={"device": "odd"})
    assert summary.status_code == 200, summary.text
    assert summary.json()["count"] == 2 and summary.json()["errors"] == 1
    # The error itself is beyond a double: reported as the largest double, not a 500.
    assert summary.json()["max_abs_error_pct"] == sys.float_info.max


def test_listed_pairs_beyond_double_range_have_exact_errors(client: Any, db_url: str) -> None:
    huge = _pairs_beyond_double_range(client, db_url, ["3", "0"])
    half = huge // 2  # an error of +100 % to 3 decimals, though neither count fits a double
    engine = create_engine(db_url)
    with Session(engine) as session:
        estimate_id = session.scalars(select(Measurement.estimate_id)).first()
        session.add(
            Measurement(estimate_id=estimate_id, device="odd", status="ok",
                        measured_peak_bytes=str(half), created_at=utcnow())
        )  # fmt: skip
        session.add(
            Measurement(estimate_id=estimate_id, device="odd", status="ok",
                        measured_peak_bytes=str(huge * 3), created_at=utcnow())
        )  # fmt: skip
        session.commit()
    engine.dispose()
    listed = client.get("/v1/measurements", params={"device": "odd"})
    assert listed.status_code == 200, listed.text
    rows = listed.json()["items"]
    assert [row["estimate_bytes"] for row in rows] == [huge] * 4
    assert [row["measured_bytes"] for row in rows] == [3, 0, half, huge * 3]
    # Beyond a double: its largest; no peak: no error; exact where the ratio is ordinary.
    assert [row["error_pct"] for row in rows] == [sys.float_info.max, None, 100.0, -66.667]


def test_batch_curve_is_the_engine_and_errors_name_the_field(client: Any) -> None:
    spec = {"family": "ae", "k": 6, "nt": 4}
    body = {"spec": spec, "mode": "paper", "batches": [1, 2048, 4096]}
    curve = client.post("/v1/batch-curve", json=body)
    assert curve.status_code == 200, curve.text
    plan = cached_plan(FamilySpec(**spec), "paper")
    assert [p["total_bytes"] for p in curve.json()["points"]] == [
        plan.total_bytes(b) for b in (1, 2048, 4096)
    ]
    assert round(curve.json()["points"][1]["total_gib"], 1) == 800.9
    assert curve.json()["skipped"] == []
    deep = {"family": "ae", "k": 1, "nt": 1, "decoder_blocks": 20, "hr": 64, "batch": 8}
    framework = client.post(
        "/v1/batch-curve", json={"spec": deep, "mode": "framework", "batches": [16, 1, 4, 2, 8]}
    )
    assert framework.status_code == 200, framework.text
    assert framework.json()["skipped"] == []  # thinning by the budget: tests/test_limits.py
    assert [p["total_bytes"] for p in framework.json()["points"]] == [
        cached_plan(FamilySpec(**{**deep, "batch": b}), "framework").total_bytes(b)
        for b in (1, 2, 4, 8, 16)
    ]
    many = client.post("/v1/batch-curve", json={**body, "mode": "framework", "batches": [1] * 33})
    assert many.status_code == 422 and "at most 32" in many.json()["detail"]
    bad = client.post("/v1/batch-curve", json={**body, "batches": [0]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"].startswith("batches")
    bad = client.post("/v1/batch-curve", json={**body, "spec": {"family": "ae", "k": 0, "nt": 4}})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "spec.k"


def test_spec_text_parses_yaml_and_json_or_says_where_not(client: Any) -> None:
    parsed = client.post("/v1/specs/parse", json={"text": "family: bae\nk: 6\nnt: 4\n"})
    assert parsed.json() == {"spec": {"family": "bae", "k": 6, "nt": 4}}
    parsed = client.post("/v1/specs/parse", json={"text": '{"family": "ae", "k": 2, "nt": 2}'})
    assert parsed.json()["spec"]["family"] == "ae"
    for text, words in [
        ("family: ae\nk: [6\n", "not valid YAML at line"),
        ('{"family": ', "not valid JSON"),
        ("- 1\n- 2\n", "mapping"),
        ("   ", "paste a spec"),
    ]:
        answer = client.post("/v1/specs/parse", json={"text": text})
        assert answer.status_code == 422, text
        assert answer.json()["errors"][0]["field"] == "text"
        assert words in answer.json()["errors"][0]["message"]


def test_table2_endpoint_is_the_reproduction(client: Any) -> None:
    cells = client.get("/v1/table2").json()["cells"]
    expected = reproduce()
    assert len(cells) == len(expected) == 72
    assert [c["total_bytes"] for c in cells] == [c.total_bytes for c in expected]
    assert {(c["column"], c["k"], c["nt"]) for c in cells if c["known_misprint"]} == {
        ("ae", 4, 64),
        ("ae", 10, 16),
    }
    page = client.get("/table2")
    assert page.status_code == 200 and page.text.count('class="t2 mark-bad"') == 2


def test_pages_answer_html_and_plotly_is_served_compressed_for_a_year(client: Any) -> None:
    for path in ("/", "/estimate", "/measured", "/jobs", "/jobs/5", "/training", "/table2"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html")
        assert "cdn" not in page.text.lower() and "https://" not in page.text
    assert client.get("/jobs/0").status_code == 422
    urls = client.app.state.assets.urls
    assert urls["plotly.js"] in client.get("/estimate").text
    plotly = client.get(urls["plotly.js"], headers={"accept-encoding": "gzip"})
    assert plotly.status_code == 200
    assert plotly.headers["content-encoding"] == "gzip"
    assert plotly.headers["cache-control"] == "public, max-age=31536000, immutable"
    raw = plotly.content  # httpx decodes gzip; the compressed size is the stored one
    compressed = client.app.state.assets.by_name[urls["plotly.js"].rsplit("/", 1)[1]].gzipped
    assert gzip.decompress(compressed) == raw and len(compressed) < len(raw) / 3
    assert b"plotly.js v" in raw[:200]
    again = client.get(urls["plotly.js"], headers={"if-none-match": plotly.headers["etag"]})
    assert again.status_code == 304
    plain = client.get(urls["app.js"], headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers and b"/v1/" in plain.content
    assert client.get("/static/nothing.js").status_code == 404
