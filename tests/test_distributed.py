"""course.generate under torchrun (gloo on the CPU): the images of a seed do not depend on the
number of processes, FID's statistics summed over ranks equal one process's, a killed run resumes
with another number of processes without losing or repeating a seed, and a mismatched
configuration or a process group that cannot form is a one-line error on every rank, not a hang."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from course import fid

# One worker runs this module (make test runs pytest-xdist with --dist loadgroup), so that the
# one-process reference run of the module-scoped fixture is made once, not once per worker.
pytestmark = pytest.mark.xdist_group("distributed")

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
GEN = ["-m", "course.generate", "adm-icg", "--tiny", "--batch", "1", "--steps", "3"]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # torchrun gives each worker one thread; the reference run matches it


def run(cmd, timeout=600, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=kw.pop("env", ONE_THREAD), **kw)


def batches(out):
    """{seed: (image, label)} of every batch file in ``out``; fails on a seed written twice."""
    found = {}
    for path in sorted(out.glob("batch_*.safetensors")):
        b = load_file(str(path))
        for seed, image, label in zip(b["seeds"].tolist(), b["images"], b["labels"]):
            assert seed not in found, f"seed {seed} is in two batch files"
            found[seed] = (image, label)
    return found


class MeanFeatures(torch.nn.Module):
    def forward(self, x):  # [N, 3, 64, 64] uint8 -> [N, 3] channel means (a stand-in; fewer dimensions than images,
        return x.float().mean(dim=(2, 3)) / 255  # so that the covariance has full rank and FD is well conditioned)


@pytest.fixture(scope="module")
def fid_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fid")
    net = folder / "features.pt2"
    example = torch.zeros(2, 3, 64, 64, dtype=torch.uint8)
    torch.export.save(torch.export.export(MeanFeatures(), (example,), dynamic_shapes={"x": {0: torch.export.Dim("n", min=1)}}), str(net))
    g = torch.Generator().manual_seed(0)
    fid.save_reference(folder / "ref.npz", MeanFeatures()(torch.randint(0, 256, (64, 3, 64, 64), generator=g, dtype=torch.uint8)))
    return ["--fid-network", str(net), "--fid-ref", str(folder / "ref.npz")]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, fid_files):
    out = tmp_path_factory.mktemp("one") / "run"
    done = run([sys.executable, *GEN, "--seeds", "0-5", "--out", str(out), *fid_files])
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_two_processes_make_the_same_images_and_the_same_fd_as_one(tmp_path, one_process, fid_files):
    out = tmp_path / "two"
    done = run([*TORCHRUN, "--nproc_per_node=2", *GEN, "--seeds", "0-5", "--out", str(out), *fid_files])
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = batches(one_process), batches(out)
    assert sorted(one) == sorted(two) == list(range(6))
    for seed in one:
        assert torch.equal(one[seed][0], two[seed][0]) and torch.equal(one[seed][1], two[seed][1]), f"seed {seed} differs"
    m1, m2 = (json.loads((o / "metrics.json").read_text()) for o in (one_process, out))
    assert m1["world_size"] == 1 and m2["world_size"] == 2 and m2["images_this_run"] == 6
    assert m2["fid"] == pytest.approx(m1["fid"], rel=1e-10), (m1["fid"], m2["fid"])
    # and both equal the Fréchet distance of the features computed in one piece (centred covariance)
    images = torch.stack([one[s][0] for s in sorted(one)])
    features = fid.features_of(images, fid.load_feature_network(fid_files[1]))
    assert m1["fid"] == pytest.approx(fid.frechet_to_reference(features, fid.load_reference(fid_files[3])), rel=1e-10)


def _worker_pid(out, rank):
    """The pid of the torchrun worker with RANK=rank that writes into ``out``."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
            environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if "course.generate" in cmdline and str(out) in cmdline and f"RANK={rank}".encode() in environ:
            return int(pid)
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker through /proc")
def test_a_killed_run_resumes_with_another_number_of_processes(tmp_path, one_process):
    out = tmp_path / "killed"
    cmd = [*TORCHRUN, "--nproc_per_node=2", *GEN, "--seeds", "0-11", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ONE_THREAD)
    deadline = time.time() + 300
    while len(list(out.glob("batch_*.safetensors.sha256"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    pid = _worker_pid(out, 1)
    assert pid is not None and proc.poll() is None, "the run ended before a rank could be killed"
    os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=300) != 0  # torchrun stops the other rank and reports the failure
    made_before = len(list(out.glob("batch_*.safetensors.sha256")))
    assert 2 <= made_before < 12
    resumed = run([sys.executable, *GEN, "--seeds", "0-11", "--out", str(out)])  # now one process
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images_this_run"] == 12 - made_before and metrics["world_size"] == 1
    found = batches(out)
    assert sorted(found) == list(range(12))  # no seed lost, none twice (batches() checks)
    reference = batches(one_process)
    for seed in range(6):  # made by two processes before the kill or by one after it: the same images
        assert torch.equal(found[seed][0], reference[seed][0]), f"seed {seed} differs from the uninterrupted run"
    assert json.loads((out / "run.json").read_text())["complete"] is True


def test_a_mismatched_configuration_is_one_line_on_every_rank(tmp_path, one_process):
    t = time.time()
    done = run([*TORCHRUN, "--nproc_per_node=2", *GEN, "--w", "9", "--seeds", "0-5", "--out", str(one_process)], timeout=300)
    assert done.returncode != 0 and time.time() - t < 120
    errors = [line for line in done.stderr.splitlines() if line.startswith("error (rank")]
    assert sorted(line[:13] for line in errors) == ["error (rank 0", "error (rank 1"], done.stderr[-3000:]
    assert all("other settings" in line and "w: the folder has 1.5, this run asks 9.0" in line for line in errors)


def test_a_process_group_that_cannot_form_is_an_error_not_a_hang(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**ONE_THREAD, "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    t = time.time()
    done = run([sys.executable, *GEN, "--seeds", "0-1", "--out", str(tmp_path / "x"), "--timeout", "2"], env=env, timeout=120)
    assert done.returncode == 2 and time.time() - t < 60, done.stderr
    assert "did not all join within 2 s" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "x").exists()


def test_seed_lists_and_batches():
    from course import generate

    assert generate.parse_seeds("0-3,7, 5") == [0, 1, 2, 3, 5, 7]
    assert generate.format_seeds([0, 1, 2, 3, 5, 7]) == "0-3,5,7"
    assert generate.batches_of([0, 1, 2, 5, 17], 4) == [(0, [0, 1, 2]), (1, [5]), (4, [17])]
    for bad, why in (("3-1", "backwards"), ("a-b", "numbers and ranges"), ("99999999999999999999", "largest seed"), ("", "numbers")):
        with pytest.raises(ValueError, match=why):
            generate.parse_seeds(bad)
    labels, gens = generate.make_labels_and_generators([11, 12])
    again, _ = generate.make_labels_and_generators([12])
    assert labels[1] == again[0]  # a seed's label does not depend on its batch


def test_generate_refuses_bad_input_in_one_line_and_leaves_no_folder(tmp_path, capsys):
    from course import generate

    a_file = tmp_path / "file"
    a_file.write_text("x")
    bad_record = tmp_path / "bad_record"
    bad_record.mkdir()
    (bad_record / "run.json").write_text('{"config": [1, 2]}')
    cases = [(["--device", "foo"], "--device must be cpu, cuda or cuda:N"), (["--device", "meta"], "--device must be"),
             (["--seeds", "123456789012345678901"], "largest seed"), (["--w", "nan"], "--w must be a finite number"),
             (["--w", "inf"], "--w must be a finite number"), (["--timeout", "nan"], "--timeout must be"),
             (["--timeout", "-1"], "--timeout must be"), (["--steps", "0"], "--steps must be"),
             (["--n", "3", "--seeds", "0-2"], "not both"), (["--fid-ref", "x.npz"], "needs both")]
    for extra, why in cases:
        out = tmp_path / "never"
        assert generate.main(["adm-icg", "--tiny", "--out", str(out), *extra]) == 2, extra
        err = capsys.readouterr().err
        assert why in err and err.count("\n") == 1 and "Traceback" not in err, (extra, err)
        assert not out.exists(), extra
    assert generate.main(["adm-icg", "--tiny", "--out", str(a_file)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert generate.main(["adm-icg", "--tiny", "--out", str(bad_record)]) == 2
    assert "run.json is unreadable" in capsys.readouterr().err


def test_each_image_of_the_ancestral_sampler_depends_on_its_own_generator():
    """guided-diffusion's sampler draws fresh noise at every step: with one generator per row, an
    image is the same alone or in a batch (up to the batch's float arithmetic)."""
    from course.imagenet import presets

    D, _ = presets.build("adm-cg", tiny=True)
    labels = torch.tensor([3, 7])
    with torch.no_grad():
        pair = presets.sample("adm-cg", D, labels, [torch.Generator().manual_seed(s) for s in (11, 12)], steps=3)
        alone = presets.sample("adm-cg", D, labels[1:], [torch.Generator().manual_seed(12)], steps=3)
    gap = (pair[1:] - alone).abs()
    # the batch's float arithmetic (amplified over the steps) moves a few pixels by < 0.05; another
    # row's noise would move every pixel by order 1, as the other seed's image shows
    assert (gap < 1e-3).double().mean() > 0.99 and gap.max() < 0.05, (gap.max(), (gap < 1e-3).double().mean())
    assert ((pair[0] - pair[1]).abs() > 0.1).double().mean() > 0.5
