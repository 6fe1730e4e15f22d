"""POST /v1/jobs with kind 'train': stored parameters, 422s naming the field, result routes.

No worker here (tests/test_train_e2e.py runs one); SQLite and PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

API_KEY = "s3cret-key"
KEY = {"X-API-Key": API_KEY}
TINY = {"family": "tanh-bae", "k": 2, "nt": 2, "ht": 16, "hr": 32, "batch": 64}


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Any:
    from app.core.config import Settings

    return Settings(database_url=db_url, data_dir=tmp_path, api_key=API_KEY)


def _train(client: Any, **fields: Any) -> Any:
    body = {"kind": "train", "spec": TINY, **fields}
    return client.post("/v1/jobs", json=body, headers=KEY)


def test_train_job_stores_every_parameter_with_its_default(client: Any) -> None:
    response = _train(client, train={"channel": "cross", "steps": 50, "batch": 32})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "train" and job["status"] == "queued"
    assert job["total_steps"] == 50 and job["step"] is None and job["phase"] is None
    assert job["loss"] is None and job["ebn0_db"] is None
    train = job["params"]["train"]
    assert train == {
        "channel": "cross",
        "cross": 0.3,
        "train_ebn0_db": 7.0,
        "steps": 50,
        "lr": 0.001,  # the spec's Adam, the paper's rate
        "batch": 32,
        "seed": 0,
        "checkpoint_every": 100,
        "receivers": None,  # DetNet only
    }
    assert job["params"]["evaluate"] == {
        "ebn0_db": "0:12:1",
        "target_errors": 1000,
        "max_bits": 10_000_000,
        "baselines": ["zf", "mmse", "ml"],
        "seed": 0,
        "test_samples": 2000,  # CsiNet only
    }
    # The stored spec carries the training batch, and so does its paired estimate.
    assert job["spec"]["batch"] == 32
    estimate = client.get(f"/v1/estimates/{job['params']['estimate_id']}").json()
    assert estimate["batch"] == 32


def test_defaults_follow_the_spec(client: Any) -> None:
    spec = {**TINY, "optimizer": "sgd"}
    job = client.post("/v1/jobs", json={"kind": "train", "spec": spec}, headers=KEY).json()
    assert job["params"]["train"]["lr"] == 0.01 and job["params"]["train"]["batch"] == 64
    assert job["total_steps"] == 2000


def test_a_range_of_training_snr_is_stored(client: Any) -> None:
    response = _train(client, train={"train_ebn0_db": [2, 9]})
    assert response.status_code == 202, response.text
    assert response.json()["params"]["train"]["train_ebn0_db"] == [2.0, 9.0]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"train": {"steps": 0}}, "train.steps"),
        ({"train": {"steps": "many"}}, "train.steps"),
        ({"train": {"lr": -1}}, "train.lr"),
        ({"train": {"channel": "fading"}}, "train.channel"),
        ({"train": {"cross": 1.5}}, "train.cross"),
        ({"train": {"train_ebn0_db": [9, 2]}}, "train.train_ebn0_db"),
        ({"train": {"train_ebn0_db": 500}}, "train.train_ebn0_db"),
        ({"train": {"batch": 0}}, "train.batch"),
        ({"train": {"checkpoint_every": 0}}, "train.checkpoint_every"),
        ({"train": {"epochs": 3}}, "train.epochs"),
        ({"evaluate": {"ebn0_db": "12:0:1"}}, "evaluate.ebn0_db"),
        ({"evaluate": {"ebn0_db": "0:1000:0.01"}}, "evaluate.ebn0_db"),
        ({"evaluate": {"ebn0_db": "0:60:1e-300"}}, "evaluate.ebn0_db"),
        ({"evaluate": {"target_errors": 0}}, "evaluate.target_errors"),
        ({"evaluate": {"max_bits": 0}}, "evaluate.max_bits"),
        ({"evaluate": {"baselines": ["zf", "zf"]}}, "evaluate.baselines"),
        ({"evaluate": {"baselines": ["sic"]}}, "evaluate.baselines.0"),
        ({"spec": {**TINY, "n": 2}}, "spec.n"),
        ({"spec": {**TINY, "nr": 3}}, "spec.nr"),
        ({"spec": {**TINY, "optimizer": "none"}}, "spec.optimizer"),
        ({"spec": {"family": "ae", "k": 6, "nt": 4}}, "spec.k"),
        ({"spec": {**TINY, "k": 4, "nt": 8}}, "evaluate.baselines"),
        (
            {
                "spec": {
                    "input_kind": "bits",
                    "input_size": 4,
                    "loss": "mse",
                    "layers": [{"type": "dense", "units": 4}],
                }
            },
            "spec",
        ),
    ],
)
def test_invalid_training_parameters_are_422_naming_the_field(
    client: Any, fields: dict[str, Any], field: str
) -> None:
    response = _train(client, **fields)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [error["field"] for error in response.json()["errors"]], response.json()
    assert client.get("/v1/jobs").json()["items"] == []


def test_rayleigh_allows_more_receive_antennas(client: Any) -> None:
    spec = {**TINY, "nr": 3}
    body = {"kind": "train", "spec": spec, "train": {"channel": "rayleigh"}}
    response = client.post("/v1/jobs", json=body, headers=KEY)
    assert response.status_code == 202, response.text


def test_training_fields_on_a_profile_job_are_422(client: Any) -> None:
    body = {"kind": "profile", "spec": TINY, "train": {"steps": 3}}
    response = client.post("/v1/jobs", json=body, headers=KEY)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "train"


def test_result_routes_before_the_job_ran(client: Any) -> None:
    job = _train(client, train={"steps": 5}).json()
    ber = client.get(f"/v1/jobs/{job['id']}/ber")
    assert ber.status_code == 200 and ber.json() == {"job_id": job["id"], "rows": []}
    assert client.get(f"/v1/jobs/{job['id']}/history").status_code == 404
    assert client.get(f"/v1/jobs/{job['id']}/model").status_code == 404
    assert client.get("/v1/jobs/999999/ber").status_code == 404
    profile = client.post("/v1/jobs", json={"spec": TINY}, headers=KEY).json()
    assert client.get(f"/v1/jobs/{profile['id']}/ber").status_code == 404


def test_stored_ber_rows_come_back_in_order(client: Any, settings: Any) -> None:
    from app.db.session import make_engine, make_sessionmaker
    from app.services.training import store_ber

    job = _train(client, train={"steps": 5}).json()
    rows = [
        {
            "detector": name,
            "ebn0_db": snr,
            "bits": 4000,
            "bit_errors": 10,
            "ber": 0.0025,
            "ci_low": 0.0012,
            "ci_high": 0.0046,
            "symbols": 2000,
            "symbol_errors": 9,
            "messages": 1000,
            "message_errors": 8,
            "tx_energy": 1.0,
        }
        for name in ("tanh-bae", "zf")
        for snr in (0.0, 2.0)
    ]
    engine = make_engine(settings.sqlalchemy_url)
    try:
        with make_sessionmaker(engine)() as session:
            store_ber(session, job["id"], rows)
            session.commit()
    finally:
        engine.dispose()
    got = client.get(f"/v1/jobs/{job['id']}/ber").json()["rows"]
    assert [(r["detector"], r["ebn0_db"]) for r in got] == [
        ("tanh-bae", 0.0),
        ("tanh-bae", 2.0),
        ("zf", 0.0),
        ("zf", 2.0),
    ]
    assert got[0]["ser"] == pytest.approx(9 / 2000) and got[0]["bler"] == pytest.approx(0.008)
    assert got[0]["errors"] == 10


def _seed_spec(family: str) -> dict[str, Any]:
    from estimator.families import csinet, detnet

    spec = csinet("1/16", batch=16) if family == "csinet" else detnet(4, 8, 3, batch=16)
    dumped: dict[str, Any] = spec.model_dump(mode="json")
    return dumped


def test_csinet_and_detnet_train_jobs_store_their_resolved_parameters(client: Any) -> None:
    def submit(family: str, **fields: Any) -> Any:
        body = {"kind": "train", "spec": _seed_spec(family), "mode": "paper", **fields}
        response = client.post("/v1/jobs", json=body, headers=KEY)
        assert response.status_code == 202, response.text
        return response.json()["params"]

    csinet = submit("csinet", train={"steps": 5})
    assert csinet["evaluate"]["baselines"] == [] and csinet["train"]["receivers"] is None
    assert csinet["train"]["lr"] == 0.001 and csinet["train"]["batch"] == 16
    detnet = submit("detnet", train={"steps": 5})
    assert detnet["train"]["receivers"] == 30 and detnet["train"]["train_ebn0_db"] == [0, 15]
    assert detnet["evaluate"]["baselines"] == ["zf", "mmse"]  # ML over 2^K is not run
    chosen = submit("detnet", train={"receivers": 6, "train_ebn0_db": [5, 10]})
    assert chosen["train"]["receivers"] == 6 and chosen["train"]["train_ebn0_db"] == [5, 10]


@pytest.mark.parametrize(
    ("family", "fields", "field"),
    [
        ("csinet", {"train": {"channel": "cross"}}, "train.channel"),
        ("csinet", {"train": {"receivers": 8}}, "train.receivers"),
        ("csinet", {"evaluate": {"baselines": ["zf"]}}, "evaluate.baselines"),
        ("csinet", {"evaluate": {"test_samples": 0}}, "evaluate.test_samples"),
        ("detnet", {"train": {"receivers": 3}}, "train.receivers"),  # N < K: no ZF
        ("detnet", {"train": {"receivers": 0}}, "train.receivers"),
        ("detnet", {"evaluate": {"baselines": ["zf", "ml"]}}, "evaluate.baselines"),
        ("detnet", {"train": {"cross": 0.1}}, "train.cross"),
    ],
)
def test_invalid_csinet_and_detnet_jobs_are_422_naming_the_field(
    client: Any, family: str, fields: dict[str, Any], field: str
) -> None:
    body = {"kind": "train", "spec": _seed_spec(family), "mode": "paper", **fields}
    response = client.post("/v1/jobs", json=body, headers=KEY)
    assert response.status_code == 422, response.text
    assert field in [error["field"] for error in response.json()["errors"]], response.json()
    assert client.get("/v1/jobs").json()["items"] == []


def test_receivers_are_for_detnet_only(client: Any) -> None:
    response = _train(client, train={"receivers": 4})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "train.receivers"


def test_stored_metrics_come_back_in_order(client: Any, settings: Any) -> None:
    from app.db.session import make_engine, make_sessionmaker
    from app.services.training import store_metrics

    job = _train(client, train={"steps": 5}).json()
    assert client.get(f"/v1/jobs/{job['id']}/metrics").json() == {
        "job_id": job["id"],
        "metrics": [],
    }
    rows = [
        {"name": "nmse_db", "value": -3.5, "ebn0_db": None, "detail": {"untrained": 9.0}},
        {"name": "rho", "value": 0.8, "ebn0_db": None, "detail": {}},
        {"name": "ber", "value": float("nan"), "ebn0_db": 12.0, "detail": {}},  # not stored
    ]
    engine = make_engine(settings.sqlalchemy_url)
    try:
        with make_sessionmaker(engine)() as session:
            store_metrics(session, job["id"], rows)
            session.commit()
    finally:
        engine.dispose()
    got = client.get(f"/v1/jobs/{job['id']}/metrics").json()["metrics"]
    assert got == rows[:2]
    profile = client.post("/v1/jobs", json={"spec": TINY}, headers=KEY).json()
    assert client.get(f"/v1/jobs/{profile['id']}/metrics").status_code == 404
    assert client.get("/v1/jobs/999999/metrics").status_code == 404


def test_training_noise_is_the_channels_n0_per_sample() -> None:
    """train_batch's noise has variance N0 / 2 per real dimension (profilers.phy.noise_n0),
    at one Eb/N0 and for Eb/N0 drawn uniformly in dB per sample."""
    import numpy as np

    from app.api.schemas import TrainParams
    from app.worker.training import train_batch
    from estimator.spec import FamilySpec
    from profilers.phy.channels import noise_n0

    spec = FamilySpec(**{**TINY, "batch": 40_000})
    for ebn0, expected in [(4.0, noise_n0(4.0, 2)), ([0.0, 10.0], None)]:
        inputs, _labels = train_batch(
            spec, TrainParams(train_ebn0_db=ebn0), np.random.default_rng(1)
        )
        noise = inputs[1]
        assert noise.shape == (40_000, 4)
        if expected is None:  # the mean of N0 over Eb/N0 uniform in [0, 10] dB
            expected = float(noise_n0(np.linspace(0.0, 10.0, 10_001), 2).mean())
        assert float(np.mean(noise.astype(np.float64) ** 2)) == pytest.approx(
            expected / 2, rel=0.02
        )


def test_training_child_runs_numpy_blas_single_threaded_unless_told() -> None:
    from app.worker.training import child_environment

    env = child_environment("CPU:0", {"PYTHONPATH": "/elsewhere", "TF_ENABLE_ONEDNN_OPTS": "0"})
    assert env["OPENBLAS_NUM_THREADS"] == "1" and env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["PYTHONPATH"].endswith(":/elsewhere")
    assert env["TF_ENABLE_ONEDNN_OPTS"] == "1"  # the kernels framework mode was traced with
    told = child_environment("GPU:0", {"OPENBLAS_NUM_THREADS": "4"})
    assert told["OPENBLAS_NUM_THREADS"] == "4" and "CUDA_VISIBLE_DEVICES" not in told
