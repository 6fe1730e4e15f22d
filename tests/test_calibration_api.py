"""GET /v1/devices/{name}/calibration: fitted from stored pairs, on SQLite and PostgreSQL."""

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from app.db.models import Measurement
from estimator.calibration import A100_PRIOR_OFFSET_BYTES


def _store_pairs(client, db_url, device, gap, mode="paper"):
    """Three `mode` estimates over HTTP and a measurement `gap` bytes above each, in the DB."""
    engine = create_engine(db_url)
    with Session(engine) as session:
        for k in (2, 4, 6):
            spec = {"family": "bae", "k": k, "nt": 2, "mode": mode}
            body = client.post("/v1/estimates", json=spec).json()
            measured = body["total_bytes"] + gap
            session.add(
                Measurement(
                    estimate_id=body["id"],
                    device=device,
                    measured_peak_bytes=str(measured),
                    status="ok",
                )
            )
        session.add(
            Measurement(
                estimate_id=body["id"], device=device, measured_peak_bytes=None, status="oom"
            )
        )
        session.commit()
    engine.dispose()


def test_prior_until_pairs_then_fit(client, db_url):
    prior = client.get("/v1/devices/a100-80gb/calibration", params={"mode": "paper"})
    assert prior.status_code == 200
    assert prior.json() | {} == {
        "device": "a100-80gb",
        "mode": "paper",
        "offset_bytes": A100_PRIOR_OFFSET_BYTES,
        "scale": 1.0,
        "pairs": 0,
        "source": "prior",
    }
    _store_pairs(client, db_url, "a100-80gb", gap=123_456_789)
    fitted = client.get("/v1/devices/a100-80gb/calibration", params={"mode": "paper"}).json()
    assert (fitted["source"], fitted["pairs"], fitted["offset_bytes"]) == ("fit", 3, 123_456_789)
    other_mode = client.get("/v1/devices/a100-80gb/calibration", params={"mode": "framework"})
    assert other_mode.json()["pairs"] == 0  # pairs count only for the mode they estimate


def test_unknown_device_is_404_problem(client):
    response = client.get("/v1/devices/tpu-v9/calibration")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


def test_gate_on_a_device_judges_with_the_prior_only(client, db_url):
    """Fit verdicts follow one rule on every surface (estimator.gate): a named device's
    prior calibration; stored pairs change GET .../calibration and estimates, not verdicts."""
    body = {
        "device": "a100-80gb",
        "mode": "paper",
        "specs": [{"spec": {"family": "bae", "k": 2, "nt": 2}}],
    }
    before = client.post("/v1/gate", json=body).json()["verdicts"][0]
    assert before["calibration"] == "prior (0 pairs)"
    assert before["total_bytes"] == before["upper_bytes"] + A100_PRIOR_OFFSET_BYTES
    _store_pairs(client, db_url, "a100-80gb", gap=10**9)
    after = client.post("/v1/gate", json=body).json()["verdicts"][0]
    assert after == before
    fitted = client.get("/v1/devices/a100-80gb/calibration", params={"mode": "paper"}).json()
    assert fitted["source"] == "fit"
    by_size = client.post("/v1/gate", json={**body, "device": None, "vram": "80GiB"}).json()
    assert by_size["verdicts"][0]["calibration"] == "none"


def test_estimate_for_a_device_carries_the_calibrated_total(client, db_url):
    spec = {"family": "bae", "k": 2, "nt": 2, "mode": "paper"}
    plain = client.post("/v1/estimates", json=spec).json()
    assert plain["calibrated"] is None
    answer = client.post("/v1/estimates", json={**spec, "device": "a100-40gb"}).json()
    assert answer["id"] == plain["id"]  # the same stored estimate
    calibrated = answer["calibrated"]
    assert calibrated["calibration"]["source"] == "prior"
    assert calibrated["total_bytes"] == plain["total_bytes"] + A100_PRIOR_OFFSET_BYTES
    unknown = client.post("/v1/estimates", json={**spec, "device": "tpu"})
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "device"
