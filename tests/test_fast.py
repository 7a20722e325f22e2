"""The fast path (course_lib.fast) on the CPU: the same outputs as the plain path, the same code as on a GPU minus the
compiler."""
import hashlib, json, os, subprocess, sys
from pathlib import Path
from unittest import mock

import pytest
import torch

from course_lib.core import settings
from course_lib.conditioning import generate_from_class, make_class_unet, train_class_conditioned
from course_lib.garments import draw_fashion
from course_lib.fast import (SAID, FastInference, PlainPathFallback, compiled_for_training, detached_from_graph,
                             compiled_or_plain, fast_inference, fast_path_wanted, read_gpu_report, to_runner,
                             usable_dtype)
from course_lib.training import uses_bf16
from course_lib.models import clip_tokenizer_from_bpe, make_scheduler, tiny_sd_pipeline
from course_lib.sampling import generate

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pipe(bpe_path): return tiny_sd_pipeline(seed=0, tokenizer=clip_tokenizer_from_bpe(bpe_path), device="cpu")


def test_setting_decides_on_cuda_only(monkeypatch):
    assert fast_path_wanted(None, "cpu") is False and fast_path_wanted(True, "cpu") is True
    monkeypatch.setenv("COURSE_FAST_GPU", "no")
    assert fast_path_wanted(None, "cuda") is False and fast_path_wanted(True, "cuda") is True
    monkeypatch.setenv("COURSE_FAST_GPU", "yes")
    assert fast_path_wanted(None, "cuda") is True and fast_path_wanted(False, "cuda") is False
    monkeypatch.setenv("COURSE_FAST_GPU", "sometimes")
    with pytest.raises(ValueError, match="`fast_gpu` must be yes or no"): fast_path_wanted(None, "cuda")


@pytest.mark.parametrize("scheduler, guidance", [("pndm", 7.5), ("pndm", 1.0), ("ddim", 3.0), ("euler_a", 5.0)])
def test_generate_fast_path_gives_the_plain_pixels(pipe, scheduler, guidance):
    # guidance 1 hands PNDM the UNet's raw output, which it keeps for later steps: the fast path must copy it
    kwargs = dict(height=64, width=64, num_inference_steps=6, guidance_scale=guidance, seed=3, output_type="pt",
                  progress=False, scheduler=make_scheduler(scheduler, pipe.scheduler.config))
    plain, fast = generate(pipe, "a red cube", fast=False, **kwargs), generate(pipe, "a red cube", fast=True, **kwargs)
    assert plain.shape == (1, 3, 64, 64)
    torch.testing.assert_close(fast, plain, atol=1e-4, rtol=0)


def test_generate_from_class_fast_path():
    model, ddim = make_class_unet("smoke"), make_scheduler("ddim")
    sample = lambda **kw: generate_from_class(model, ddim, [1, 8], 3, guidance_scale=3, num_inference_steps=4,
                                              progress=False, generator=torch.Generator().manual_seed(1), **kw)
    plain = sample(fast=False)
    torch.testing.assert_close(sample(fast=True), plain, atol=1e-4, rtol=0)
    bf16 = sample(fast=True, mixed_precision="bf16")  # bf16 weights, not autocast
    assert bf16.dtype == torch.float32 and (bf16 - sample(fast=False, mixed_precision="bf16")).abs().mean() < 0.02


def test_fast_inference_is_made_once_and_follows_the_model():
    model = make_class_unet("smoke").eval()
    x, labels = torch.randn(2, 1, 32, 32), torch.tensor([0, 10])
    fast, half = fast_inference(model), fast_inference(model, dtype=torch.bfloat16)
    assert fast_inference(model) is fast and fast.runner is model and not fast.compiled
    assert half.runner is not model and next(half.runner.parameters()).dtype == torch.bfloat16
    with torch.no_grad():
        model.conv_out.bias += 1  # a training step, say
        expected = model(x, torch.tensor(5), class_labels=labels).sample
    out = fast_inference(model, dtype=torch.bfloat16)(x, torch.tensor(5), class_labels=labels).sample
    assert (out.float() - expected).abs().mean() < 0.05


def test_inputs_and_outputs_of_the_fast_version():
    # ids and timesteps keep their type
    assert to_runner(torch.tensor([1, 2]), "cpu", torch.bfloat16).dtype == torch.int64
    assert to_runner(torch.ones(2), "cpu", torch.bfloat16).dtype == torch.bfloat16
    assert to_runner(3, "cpu", torch.bfloat16) == 3
    x = torch.ones(3)
    copied = detached_from_graph({"sample": x})
    copied["sample"].add_(1)
    assert torch.equal(x, torch.ones(3))


def test_unets_trace_as_one_graph(pipe):
    """What mode='reduce-overhead', fullgraph=True needs: dynamo traces each UNet whole, with no graph break (backend
    'eager': no compiler)."""
    unet = pipe.unet.eval()
    latents, text = torch.randn(2, 4, 8, 8), torch.randn(2, 77, unet.config.cross_attention_dim)
    traced = torch.compile(unet, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(traced(latents, torch.tensor(10), encoder_hidden_states=text, return_dict=False)[0],
                                   unet(latents, torch.tensor(10), encoder_hidden_states=text, return_dict=False)[0])
    model = make_class_unet("smoke").eval()
    x, labels = torch.randn(4, 1, 32, 32), torch.tensor([0, 1, 10, 3])
    traced = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(traced(x, torch.tensor(5), class_labels=labels).sample,
                                   model(x, torch.tensor(5), class_labels=labels).sample)


def test_training_fast_path_keeps_every_loss():
    images, labels = draw_fashion(64 * 6, seed=0)
    run = lambda fast: train_class_conditioned(make_class_unet("smoke"), images, labels, "smoke", progress=False,
                                               fast=fast, mixed_precision="no")
    plain, fast = run(False), run(True)
    assert plain["step"] == fast["step"] == len(fast["losses"]) == 6  # read in one go at the end, one loss per step
    torch.testing.assert_close(torch.tensor(fast["losses"]), torch.tensor(plain["losses"]), atol=1e-5, rtol=1e-5)


def test_compiled_for_training_is_made_once():
    model = torch.nn.Linear(2, 2)
    assert compiled_for_training(model, "cpu") is compiled_for_training(model, "cpu")


def refusing_compile(real_compile):
    """torch.compile whose backend refuses every graph, as Triton refuses a GPU it cannot build for (the failure forced
    on a CPU)."""
    def refuse(graph, example_inputs): raise RuntimeError("forced: no Triton for this GPU")
    return lambda model, mode=None, **options: real_compile(model, backend=refuse, **options)


def test_fast_inference_falls_back_to_the_plain_path_said_once(monkeypatch, capsys):
    monkeypatch.setattr(torch, "compile", refusing_compile(torch.compile))
    SAID.clear()
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.SiLU(),
                                torch.nn.Conv2d(4, 1, 3, padding=1)).eval()
    fast, x = FastInference(model, compile=True), torch.randn(2, 1, 8, 8)
    assert fast.compiled and isinstance(fast.call, PlainPathFallback)
    with torch.no_grad(): outputs, expected = [fast(x) for _ in range(3)], model(x)
    for output in outputs: torch.testing.assert_close(output, expected)
    said = capsys.readouterr().err.splitlines()
    assert len(said) == 1, said
    assert said[0].startswith("The fast path could not compile the Sequential (BackendCompilerFailed"), said
    assert said[0].endswith("running the plain path.")


def test_the_models_own_error_is_raised_as_it_is(capsys):
    """A failure the plain model shares (a wrong input shape) is the model's: raised as it is, no word about the
    compiler."""
    def refuse(graph, example_inputs): raise RuntimeError("forced: no Triton for this GPU")
    SAID.clear()
    net = torch.nn.Linear(4, 2)
    runner = compiled_or_plain(net, "the net", backend=refuse)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"): runner(torch.randn(3, 5))
    assert runner.failure is None and "could not compile" not in capsys.readouterr().err
    with torch.no_grad():  # then the compiler fails
        torch.testing.assert_close(runner(torch.ones(3, 4)), net(torch.ones(3, 4)))
    assert runner.failure.startswith("BackendCompilerFailed") and "could not compile the net" in capsys.readouterr().err


def test_a_compiler_that_fails_at_once_leaves_the_plain_model(monkeypatch, capsys):
    monkeypatch.setattr(torch, "compile", mock.Mock(side_effect=RuntimeError("Dynamo is not supported on this Python")))
    SAID.clear()
    model = torch.nn.Linear(2, 2)
    assert compiled_for_training(model, "cpu") is model
    assert capsys.readouterr().err == ("The fast path could not compile the Linear for training "
                                       "(RuntimeError: Dynamo is not supported on this Python); "
                                       "running the plain path.\n")


def test_training_with_a_compiler_that_fails_trains_on_the_plain_path(monkeypatch, capsys):
    monkeypatch.setattr(torch, "compile", refusing_compile(torch.compile))
    SAID.clear()
    images, labels = draw_fashion(64 * 3, seed=0)
    run = lambda fast, preset: train_class_conditioned(make_class_unet("smoke"), images, labels, preset, progress=False,
                                                       fast=fast, mixed_precision="no")
    compiled, plain = run(True, settings.preset("smoke") | {"compile": True}), run(False, "smoke")
    torch.testing.assert_close(torch.tensor(compiled["losses"]), torch.tensor(plain["losses"]), atol=1e-5, rtol=1e-5)
    said = [line for line in capsys.readouterr().err.splitlines() if "fast path" in line]
    assert len(said) == 1 and "could not compile the UNet2DModel for training" in said[0], said


@pytest.fixture
def a_t4():
    "torch's answers about the GPU as a T4 (Colab's free GPU: compute capability 7.5, no bf16) would give them."
    SAID.clear()
    with mock.patch.object(torch.cuda, "get_device_capability", return_value=(7, 5)), \
         mock.patch.object(torch.cuda, "get_device_name", return_value="Tesla T4"):
        yield


def test_bf16_on_a_gpu_without_it_falls_back_said_once(a_t4, capsys):
    assert [usable_dtype(torch.bfloat16, "cuda:0") for _ in range(2)] == [torch.float16] * 2  # weights: fp16
    assert [uses_bf16("bf16", "cuda:0") for _ in range(2)] == [False, False]  # autocast in training and sampling: fp32
    assert capsys.readouterr().err.splitlines() == [
        "Tesla T4 has no bf16 (compute capability 7.5; bf16 needs 8.0): the fast path uses fp16 weights instead.",
        "Tesla T4 has no bf16 (compute capability 7.5; bf16 needs 8.0): mixed_precision='bf16' runs in fp32 instead."]
    assert usable_dtype(torch.float32, "cuda:0") == torch.float32 and uses_bf16("no", "cuda:0") is False
    with mock.patch.object(torch.cuda, "get_device_capability", return_value=(9, 0)):  # an H200 keeps bf16
        assert usable_dtype(torch.bfloat16, "cuda:0") == torch.bfloat16 and uses_bf16("bf16", "cuda:0") is True


def tree_digest(*folders) -> str:
    "One hash of every file's path and bytes under `folders`."
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(ROOT)).encode()); digest.update(path.read_bytes())
    return digest.hexdigest()


def test_the_packaged_gpu_report_is_the_committed_one():
    """read_gpu_report's default ships inside course_lib (Colab has no bench/); it must be bench/results' JSON, not a
    stale copy."""
    committed = json.loads((ROOT / "bench" / "results" / "gpu_report.json").read_text())
    assert read_gpu_report() == committed and "H200" in committed["device"] and not committed["check"]


@pytest.mark.slow
def test_gpu_report_check_runs_every_group_and_leaves_the_committed_results_alone(tmp_path):
    "bench/gpu_report.py --check: the GPU report's code on the CPU at toy sizes, so a GPU run does not fail on a typo."
    env = os.environ | {"COURSE_DATA_SOURCE": "offline", "MPLBACKEND": "Agg"}
    committed = (ROOT / "bench" / "results", ROOT / "course_lib" / "assets")
    before = tree_digest(*committed)
    # no --out: the default folder; timeout: ~2 min alone, 300 s ran out on a loaded machine
    subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_report.py"), "--check"],
                   cwd=tmp_path, env=env, check=True, capture_output=True, timeout=900)
    assert tree_digest(*committed) == before  # a check never overwrites measured results
    out = tmp_path / "output" / "gpu_report"
    report = json.loads((out / "gpu_report.json").read_text())
    assert report["check"] and not report["notes"], report["notes"]  # a failed group leaves a note
    assert [len(g["rows"]) for g in report["groups"]] == [5, 4, 4, 6]  # sd, panel, class sampling, training
    assert report["tables"] and "| fast path" in (out / "gpu_report.md").read_text()
