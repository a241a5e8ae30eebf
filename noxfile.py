"""Developer and CI sessions. `nox -s tests` is what CI runs (through .ci/run).

Every session installs with constraints.txt, which pins the CPU build of torch that this
machine has locally (an unpinned torch pulls a multi-GB CUDA build). Users don't need it.
"""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

PLUGINS = [
    "plugins/diffsynth-qwen-image",
    "plugins/diffsynth-flux",
    "plugins/diffsynth-wan",
    "plugins/diffsynth-flux2",
    "plugins/diffsynth-z-image",
]
TINY_MODEL = "models/Qwen/Qwen-Image"


def install(session: nox.Session, *extra: str) -> None:
    editable = [arg for p in PLUGINS for arg in ("-e", p)]
    session.install("-c", "constraints.txt", "-e", ".[test]", *editable, *extra)


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The whole test suite, CPU only: the core's, then each plugin's own (each plugin is its own
    distribution with its own tests and conftest, so each runs in its own pytest process)."""
    install(session)
    env = {"OMP_NUM_THREADS": "1"}  # one intra-op thread: 2 threads on 2 shared cores made tests 30x slower
    session.run("pytest", "-q", "tests", *session.posargs, env=env)
    for plugin in PLUGINS:
        session.run("pytest", "-q", f"{plugin}/tests", *session.posargs, env=env)


@nox.session(python="3.11")
def matrix(session: nox.Session) -> None:
    """The whole option matrix: every generic option on every tiny preset of every family (CI
    runs every option on each family's first preset, and FP8 on all of them)."""
    install(session)
    env = {"OMP_NUM_THREADS": "1", "DIFFSYNTH_FULL_MATRIX": "1"}
    for plugin in PLUGINS:
        session.run("pytest", "-q", f"{plugin}/tests/test_option_matrix.py", *session.posargs, env=env)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff (errors, pyflakes, bugbear) over everything; mypy over the core package."""
    session.install("-c", "constraints.txt", "ruff", "mypy")
    session.run("ruff", "check", "diffsynth", "plugins", "tests", "benchmarks", "scripts", "noxfile.py")
    session.run("mypy", "diffsynth")


@nox.session(python="3.11")
def demo(session: nox.Session) -> None:
    """Write the tiny Qwen-Image preset and train a LoRA on examples/data with the seed's flags."""
    install(session)
    session.run("diffsynth", "models", "init", "qwen-image", TINY_MODEL, "--preset", "tiny", "--overwrite")  # re-runnable
    env = {"DIFFSYNTH_SKIP_DOWNLOAD": "True", "DIFFSYNTH_MODEL_BASE_PATH": "models", "OMP_NUM_THREADS": "1"}
    session.run(
        "diffsynth", "train", "qwen-image",
        "--dataset_base_path", "examples/data",
        "--dataset_metadata_path", "examples/data/metadata.csv",
        "--max_pixels", "4096",
        "--dataset_repeat", "10",
        "--model_id_with_origin_paths",
        "Qwen/Qwen-Image:transformer/diffusion_pytorch_model*.safetensors,"
        "Qwen/Qwen-Image:text_encoder/model*.safetensors,"
        "Qwen/Qwen-Image:vae/diffusion_pytorch_model.safetensors",
        "--learning_rate", "1e-4",
        "--num_epochs", "1",
        "--remove_prefix_in_ckpt", "pipe.dit.",
        "--output_path", os.environ.get("DEMO_OUTPUT", "./models/train/Qwen-Image_lora"),
        "--lora_base_model", "dit",
        "--lora_target_modules",
        "to_q,to_k,to_v,add_q_proj,add_k_proj,add_v_proj,to_out.0,to_add_out,img_mlp.net.2,img_mod.1,txt_mlp.net.2,txt_mod.1",
        "--lora_rank", "32",
        "--use_gradient_checkpointing",
        "--dataset_num_workers", "2",
        "--find_unused_parameters",
        "--overwrite",  # the demo replaces its own previous output
        env=env,
    )


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmarks (docs/benchmarks.md): `nox -s bench` writes benchmarks/results/latest.json;
    `nox -s bench -- --quick` is the smoke run CI uses."""
    install(session)
    session.run("python", "-m", "benchmarks.run", *session.posargs)
