"""The data and losses of the CsiNet and DetNet training jobs: the synthetic angular-delay
channels' statistics, CsiNet's NMSE and rho, the DetNet problem's noise and baselines, and
Eq. (4) in Keras against its numpy form."""

from __future__ import annotations

import numpy as np
import pytest

from profilers.phy import csi, detection


@pytest.fixture(scope="module")
def channels() -> csi.CsiBatch:
    return csi.draw(400, np.random.default_rng(7))


def test_csinet_inputs_lie_in_0_1_around_the_offset(channels: csi.CsiBatch) -> None:
    x = channels.inputs
    assert x.shape == (400, csi.VALUES) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    # Each sample's largest real or imaginary part touches 0 or 1 (peak scaling).
    assert np.allclose(np.abs(x - 0.5).max(axis=1), 0.5, atol=1e-6)
    assert abs(float(x.mean()) - 0.5) < 0.01  # zero-mean complex gains
    # The input is the matrix at its scale, laid out (delay, angle, [Re, Im]).
    np.testing.assert_allclose(csi.from_inputs(x), channels.channels, atol=1e-6)


def test_channels_are_sparse_and_early_in_delay(channels: csi.CsiBatch) -> None:
    power = np.abs(channels.channels) ** 2
    per_sample = np.sort(power.reshape(400, -1), axis=1)[:, ::-1]
    share = per_sample[:, :102].sum(axis=1) / per_sample.sum(axis=1)  # the top 5% entries
    assert np.median(share) > 0.8
    full = csi.angular_delay(csi.spatial_frequency(400, np.random.default_rng(8)), taps=256)
    energy = np.abs(full) ** 2
    kept = energy[:, : csi.TAPS].sum(axis=(1, 2)) / energy.sum(axis=(1, 2))
    assert np.mean(kept) > 0.95  # the 32 kept taps hold the clusters (delays < 16 + tail)
    by_delay = power.sum(axis=(0, 2))
    assert by_delay[:16].sum() > 4 * by_delay[16:].sum()  # power decays with delay


def test_the_draw_is_the_generators() -> None:
    a = csi.draw(5, np.random.default_rng(3)).inputs
    b = csi.draw(5, np.random.default_rng(3)).inputs
    c = csi.draw(5, np.random.default_rng(4)).inputs
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_nmse_and_rho_on_known_estimates(channels: csi.CsiBatch) -> None:
    h = channels.channels
    assert csi.nmse_db(h, np.zeros_like(h)) == pytest.approx(0.0)  # nothing recovered
    assert csi.nmse_db(h, 0.9 * h) == pytest.approx(-20.0)  # |0.1|^2 = -20 dB
    assert csi.rho(h, h) == pytest.approx(1.0)
    assert csi.rho(h, (2.0 - 1.0j) * h) == pytest.approx(1.0)  # blind to a common gain
    rng = np.random.default_rng(0)
    noisy = h + 0.05 * (rng.standard_normal(h.shape) + 1j * rng.standard_normal(h.shape))
    assert 0.0 < csi.rho(h, noisy) < 1.0 and csi.nmse_db(h, noisy) > csi.nmse_db(h, 0.9 * h)
    # rho per subcarrier, written out: h_n is the DFT over the kept delay taps.
    n = np.arange(csi.SUBCARRIERS)[:, None] * np.arange(csi.TAPS)[None, :]
    dft = np.exp(-2j * np.pi * n / csi.SUBCARRIERS)  # (N_c, taps)
    hf, nf = dft @ h[0], dft @ noisy[0]
    cos = np.abs(np.sum(np.conj(hf) * nf, axis=1))
    cos /= np.linalg.norm(hf, axis=1) * np.linalg.norm(nf, axis=1)
    assert csi.rho(h[:1], noisy[:1]) == pytest.approx(float(np.mean(cos)))


def test_detection_noise_follows_the_snr_and_zf_inverts_h() -> None:
    rng = np.random.default_rng(1)
    batch = detection.draw(20_000, 4, 8, 10.0, rng)
    assert set(np.unique(batch.x)) == {-1.0, 1.0}
    assert np.array_equal(batch.x, 1.0 - 2.0 * batch.bits)
    noise = batch.y - np.einsum("bnk,bk->bn", batch.h, batch.x)
    signal = np.einsum("bnk,bk->bn", batch.h, batch.x)
    snr_db = 10 * np.log10(np.mean(signal**2) / np.mean(noise**2))
    assert snr_db == pytest.approx(10.0, abs=0.05)
    clean = np.einsum("bnk,bk->bn", batch.h, batch.x)
    np.testing.assert_allclose(detection.zero_forcing(batch.h, clean), batch.x, atol=1e-8)
    state = detection.network_input(batch.h[:2], batch.y[:2], v=8)
    assert state.shape == (2, 4 + 16 + 4 + 8)
    receivers = batch.h.shape[1]  # the Gram terms of H / sqrt(N)
    np.testing.assert_allclose(state[0, :4], batch.h[0].T @ batch.y[0] / receivers, rtol=1e-5)
    np.testing.assert_allclose(
        state[0, 4:20], (batch.h[0].T @ batch.h[0]).ravel() / receivers, rtol=1e-5
    )
    assert not state[:, 20:].any()  # x_1 = 0, v_1 = 0


def test_eq4_loss_numpy_matches_its_definition() -> None:
    rng = np.random.default_rng(2)
    x = rng.choice([-1.0, 1.0], size=(3, 4))
    layers = rng.standard_normal((3, 5, 4))
    zf = x + 0.3 * rng.standard_normal((3, 4))
    expected = np.mean(
        [
            sum(
                np.log(i + 1) * np.sum((x[b] - layers[b, i]) ** 2) / np.sum((x[b] - zf[b]) ** 2)
                for i in range(5)
            )
            for b in range(3)
        ]
    )
    assert detection.eq4_loss(x, layers, zf) == pytest.approx(expected)
    # The first layer's weight is log 1 = 0: its estimate does not enter the loss.
    moved = layers.copy()
    moved[:, 0] += 10.0
    assert detection.eq4_loss(x, moved, zf) == pytest.approx(expected)


@pytest.mark.tensorflow
def test_eq4_keras_loss_equals_the_numpy_loss_on_a_detnet() -> None:
    pytest.importorskip("tensorflow")
    from estimator.families import detnet
    from profilers.training_builders import detnet_model, eq4_loss

    spec = detnet(4, 6, 3, batch=16)
    built = detnet_model(spec, 1e-3, seed=0)
    rng = np.random.default_rng(0)
    batch = detection.draw(16, 4, 6, rng.uniform(0, 15, 16), rng)
    state = detection.network_input(batch.h, batch.y, v=8)
    zf = detection.zero_forcing(batch.h, batch.y)
    predicted = np.asarray(built.model(state))
    assert predicted.shape == (16, 3 * 4)  # every unfolded layer's x_hat
    labels = np.concatenate([batch.x, zf], axis=1).astype(np.float32)
    keras_loss = float(np.mean(np.asarray(eq4_loss(3, 4)(labels, predicted))))
    numpy_loss = detection.eq4_loss(batch.x, predicted.reshape(16, 3, 4).astype(float), zf)
    assert keras_loss == pytest.approx(numpy_loss, rel=1e-5)
    assert float(built.model.evaluate(state, labels, verbose=0)) == pytest.approx(
        numpy_loss, rel=1e-5
    )
    np.testing.assert_allclose(np.asarray(built.detect(state)), predicted[:, -4:])
    # The training model has the spec's layers and nothing else trainable.
    from estimator.layers import resolve

    assert built.model.count_params() == sum(layer.params for layer in resolve(spec))
