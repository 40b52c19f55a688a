"""Populations: K jobs trained as one batched network end exactly as each job alone (weights to 1e-5 relative
after 20 steps, the same statuses, epochs and accuracies), stop one by one, and are recorded as their own runs."""

import itertools
import json
import signal

import pytest
import torch

from helpers.console import run_cli
from mlplab.nn.costs import COSTS
from mlplab.training import population
from mlplab.training.loop import Pruned, train
from mlplab.training.population import population_key, shape_key, train_population
from mlplab.training.recorder import NoRecorder

STEPS_20 = ("trainer.batch_size=30", "trainer.checkpoint=false")  # 600 training images: one epoch is 20 steps
VARIANTS = {
    "plain": [],
    "momentum": ["optimizer=sgdm", "optimizer.momentum=0.9"],
    "l2": ["regularization.l2=5.0"],
    "dropout": ["regularization.dropout=0.3"],
}


def weights(folder):
    return torch.load(folder / "model.pt", weights_only=True)


def relative_difference(a: dict, b: dict) -> float:
    return max(float((a[name].double() - b[name].double()).norm() / b[name].double().norm()) for name in b)


def solo_and_population(cfgs, tmp_path, **kwargs):
    members = train_population(cfgs, [tmp_path / f"member{k}" for k in range(len(cfgs))], **kwargs)
    solos = [train(cfg, tmp_path / f"solo{k}", quiet=True) for k, cfg in enumerate(cfgs)]
    return members, solos


@pytest.mark.parametrize("engine,variant,seeds", list(itertools.product(
    ("autograd", "seed"), VARIANTS, ((0, 0, 0), (0, 1, 2)))))
def test_member_weights_after_20_steps_equal_its_solo_run(tiny_config, tmp_path, engine, variant, seeds):
    cfgs = [tiny_config(*STEPS_20, *VARIANTS[variant], f"trainer.engine={engine}", f"optimizer.lr={lr}",
                        f"trainer.seed={seed}") for lr, seed in zip((0.05, 0.2, 1.0), seeds)]
    members, solos = solo_and_population(cfgs, tmp_path)
    for k, (member, solo) in enumerate(zip(members, solos)):
        assert member.error is None and member.result.status == solo.status == "finished"
        assert relative_difference(weights(tmp_path / f"member{k}"), weights(tmp_path / f"solo{k}")) < 1e-5
        assert member.result.val_accuracy == solo.val_accuracy and member.result.test_accuracy == solo.test_accuracy
        assert member.result.history[0]["train_loss"] == pytest.approx(solo.history[0]["train_loss"], rel=1e-5)
        assert member.result.history[0]["train_accuracy"] == solo.history[0]["train_accuracy"]


@pytest.mark.parametrize("engine", ("autograd", "seed"))
def test_members_differing_in_every_key_that_may_differ_each_match_their_solo_run(tiny_config, tmp_path, engine):
    common = (*STEPS_20, "optimizer=nesterov", f"trainer.engine={engine}", "trainer.epochs=3")
    cfgs = [tiny_config(*common, "optimizer.lr=0.1", "optimizer.momentum=0.5", "trainer.seed=3"),
            tiny_config(*common, "optimizer.lr=0.3", "optimizer.momentum=0.9", "regularization.l2=2.0",
                        "schedule=piecewise", "schedule.drop_period=1"),
            tiny_config(*common, "optimizer.lr=0.05", "optimizer.momentum=0.2", "regularization.dropout=0.5",
                        "initializer=he_normal", "trainer.seed=7", "trainer.epochs=2")]
    members, solos = solo_and_population(cfgs, tmp_path)
    for k, (member, solo) in enumerate(zip(members, solos)):
        assert member.result.epochs_run == solo.epochs_run == cfgs[k].trainer.epochs
        assert [h["lr"] for h in member.result.history] == [h["lr"] for h in solo.history]
        assert relative_difference(weights(tmp_path / f"member{k}"), weights(tmp_path / f"solo{k}")) < 1e-5
    # Each member's epoch time is its share of the population's: equal among the members training then.
    shares = [[h["seconds"] for h in member.result.history] for member in members]
    assert shares[0][:2] == shares[1][:2] == shares[2][:2] and shares[0][2] == shares[1][2]


@pytest.fixture(params=("read each step", "kept on the device"))
def divergence_check(request, monkeypatch):
    """Both ways a population notices divergence: the host reading each step's costs (a CPU), and the marks
    kept on the device until the epoch's end (an accelerator's: forced here on the CPU)."""
    if request.param == "kept on the device":
        monkeypatch.setattr(population, "COSTS_READ_EACH_STEP_ON", ())
    return request.param


def test_adam_members_match_and_a_diverging_member_stops_alone(tiny_config, tmp_path, divergence_check):
    cfgs = [tiny_config(*STEPS_20, "optimizer=adam", "model.activation=relu", "trainer.epochs=2", f"optimizer.lr={lr}")
            for lr in (0.001, 1e30, 0.01)]
    members, solos = solo_and_population(cfgs, tmp_path)
    assert [m.result.status for m in members] == [s.status for s in solos] == ["finished", "diverged", "finished"]
    assert members[1].result.detail == solos[1].detail  # the same epoch and image
    # Adam's step m̂/(√v̂ + ε) is about ±η whatever a gradient's size, so the last-bit rounding of the batched
    # GEMM against the solo one grows with η: measured 7e-7 (η = 0.001), 2e-6 (0.003), 1.1e-5 (0.01) here, and
    # 2.9e-5 for the diverging member in CI. A wrong update (no bias correction, say) is off by far more.
    for k in range(3):
        assert relative_difference(weights(tmp_path / f"member{k}"), weights(tmp_path / f"solo{k}")) < 1e-4
    assert all(torch.isfinite(w).all() for w in weights(tmp_path / "member1").values())


def test_a_diverging_member_of_the_fused_four_equations_stops_alone_with_the_weights_it_had(tiny_config, tmp_path,
                                                                                           divergence_check):
    cfgs = [tiny_config(*STEPS_20, "trainer.engine=seed", "model.activation=relu", "trainer.epochs=2", f"optimizer.lr={lr}")
            for lr in (0.1, 1e30, 0.5)]
    members, solos = solo_and_population(cfgs, tmp_path)
    assert [m.result.status for m in members] == [s.status for s in solos] == ["finished", "diverged", "finished"]
    assert members[1].result.detail == solos[1].detail  # the same epoch and image
    for k in range(3):  # the diverged one's too: the weights before the step whose cost was not finite
        assert relative_difference(weights(tmp_path / f"member{k}"), weights(tmp_path / f"solo{k}")) < 1e-5
    assert all(torch.isfinite(w).all() for w in weights(tmp_path / "member1").values())


@pytest.mark.parametrize("engine", ("autograd", "seed"))
def test_with_divergence_kept_on_the_device_a_step_reads_nothing_back(tiny_config, tmp_path, monkeypatch, engine):
    # Every way a tensor's value reaches Python is counted while a step runs: on an accelerator each one
    # would wait for the device. The host's per-step check reads once a step, which shows the count works.
    reads, stepping = [], [False]
    for name in ("item", "tolist", "__float__", "__bool__", "__int__"):
        def counted(tensor, *args, _read=getattr(torch.Tensor, name), _name=name):
            if stepping[0]:
                reads.append(_name)
            return _read(tensor, *args)
        monkeypatch.setattr(torch.Tensor, name, counted)
    step = population.Population.step

    def watched(self, *args):
        stepping[0] = True
        try:
            return step(self, *args)
        finally:
            stepping[0] = False
    monkeypatch.setattr(population.Population, "step", watched)
    cfgs = [tiny_config(*STEPS_20, f"trainer.engine={engine}", "optimizer=sgdm", "regularization.l2=1.0",
                        f"optimizer.lr={lr}") for lr in (0.1, 1e30)]
    members = train_population(cfgs, [tmp_path / f"host{k}" for k in range(2)])
    assert len(reads) >= 20 and members[1].result.status == "diverged"
    reads.clear()
    monkeypatch.setattr(population, "COSTS_READ_EACH_STEP_ON", ())
    members = train_population(cfgs, [tmp_path / f"device{k}" for k in range(2)])
    assert reads == [] and [m.result.status for m in members] == ["finished", "diverged"]
    # The diverged member's weights (±inf among them here) are put back bit for bit; the other's differ in rounding only: after the
    # host drops a member its GEMMs have one member fewer, while on the device both stay to the epoch's end.
    torch.testing.assert_close(weights(tmp_path / "device1"), weights(tmp_path / "host1"), rtol=0, atol=0, equal_nan=True)
    assert relative_difference(weights(tmp_path / "device0"), weights(tmp_path / "host0")) < 1e-6


def test_ctrl_c_after_a_divergence_kept_on_the_device_ends_that_member_diverged_and_the_others_killed(
        tiny_config, tmp_path, monkeypatch):
    monkeypatch.setattr(population, "COSTS_READ_EACH_STEP_ON", ())
    step, steps = population.Population.step, []

    def interrupted_at_step_10(self, *args):
        steps.append(1)
        if len(steps) == 10:
            raise KeyboardInterrupt
        return step(self, *args)
    monkeypatch.setattr(population.Population, "step", interrupted_at_step_10)
    cfgs = [tiny_config(*STEPS_20, "trainer.engine=seed", "model.activation=relu", f"optimizer.lr={lr}")
            for lr in (0.1, 1e30, 0.5)]
    with pytest.raises(KeyboardInterrupt):
        train_population(cfgs, [tmp_path / f"member{k}" for k in range(3)])
    solo = train(cfgs[1], tmp_path / "solo1", quiet=True)
    results = [json.loads((tmp_path / f"member{k}" / "result.json").read_text()) for k in range(3)]
    assert [r["status"] for r in results] == ["killed", "diverged", "killed"]
    assert results[1]["detail"] == solo.detail
    assert relative_difference(weights(tmp_path / "member1"), weights(tmp_path / "solo1")) < 1e-5


def test_early_stopping_acts_per_member(tiny_config, tmp_path):
    cfgs = [tiny_config(*STEPS_20, "trainer.epochs=8", "trainer.early_stopping_patience=2", f"optimizer.lr={lr}")
            for lr in (1e-9, 0.5)]
    members, solos = solo_and_population(cfgs, tmp_path)
    assert [m.result.status for m in members] == [s.status for s in solos]
    assert [m.result.epochs_run for m in members] == [s.epochs_run for s in solos]
    assert members[0].result.status == "early_stopped" and members[0].result.epochs_run < 8
    assert json.loads((tmp_path / "member0" / "result.json").read_text())["status"] == "early_stopped"


def test_a_pruned_or_failing_member_ends_alone_and_the_others_finish(tiny_config, tmp_path):
    def prune(metrics):
        if metrics.epoch == 1:
            raise Pruned("pruned after epoch 1")

    def fail(metrics):
        raise RuntimeError("a callback's bug")

    cfgs = [tiny_config(*STEPS_20, "trainer.epochs=2", f"optimizer.lr={lr}") for lr in (0.1, 0.2, 0.3)]
    members = train_population(cfgs, [tmp_path / f"m{k}" for k in range(3)], callbacks=[prune, fail, None])
    assert [m.result.status for m in members] == ["pruned", "failed", "finished"]
    assert members[0].error is None and isinstance(members[1].error, RuntimeError)
    assert members[2].result.epochs_run == 2 and members[0].result.epochs_run == 1
    assert [json.loads((tmp_path / f"m{k}" / "result.json").read_text())["status"] for k in range(3)] == \
        ["pruned", "failed", "finished"]


def test_ctrl_c_ends_every_member_killed_in_mlflow(tiny_config, tmp_path, mlflow_uri):
    from mlflow import MlflowClient

    from mlplab.tracking.recorder import MlflowRecorder

    def interrupt(metrics):
        raise KeyboardInterrupt

    cfgs = [tiny_config(*STEPS_20, "tracking=local", f"tracking.uri={mlflow_uri}", "trainer.epochs=3",
                        f"optimizer.lr={lr}") for lr in (0.1, 0.2, 0.3)]
    recorders = [MlflowRecorder(cfg, [], tags={"population": "p"}) for cfg in cfgs]
    with pytest.raises(KeyboardInterrupt):
        train_population(cfgs, [tmp_path / f"m{k}" for k in range(3)], recorders=recorders,
                         callbacks=[None, interrupt, None])
    client = MlflowClient(mlflow_uri)
    runs = [client.get_run(r.run_id) for r in recorders]
    assert [r.info.status for r in runs] == ["KILLED"] * 3
    assert [r.data.tags["status"] for r in runs] == ["killed"] * 3
    assert all(r.data.tags["population"] == "p" for r in runs)
    assert [json.loads((tmp_path / f"m{k}" / "result.json").read_text())["status"] for k in range(3)] == ["killed"] * 3


def test_a_members_checkpoint_resumes_alone_exactly(tiny_config, tmp_path):
    common = (*STEPS_20, "optimizer=sgdm", "optimizer.momentum=0.9", "regularization.dropout=0.3")
    cfgs = [tiny_config(*common, "trainer.checkpoint=true", "trainer.epochs=1", f"optimizer.lr={lr}", f"trainer.seed={s}")
            for lr, s in ((0.1, 0), (0.3, 5))]
    train_population(cfgs, [tmp_path / "m0", tmp_path / "m1"])
    resumed = tiny_config(*common, "trainer.epochs=2", "optimizer.lr=0.3", "trainer.seed=5",
                          f"trainer.resume={tmp_path / 'm1' / 'checkpoint.pt'}")
    train(resumed, tmp_path / "resumed", quiet=True)
    train(tiny_config(*common, "trainer.epochs=2", "optimizer.lr=0.3", "trainer.seed=5"), tmp_path / "solo", quiet=True)
    assert relative_difference(weights(tmp_path / "resumed"), weights(tmp_path / "solo")) < 1e-5


def test_which_jobs_share_a_population(tiny_config):
    key = population_key(tiny_config())
    assert population_key(tiny_config("optimizer.lr=3", "trainer.seed=4", "regularization.l2=1", "trainer.epochs=5")) == key
    assert population_key(tiny_config("model.sizes=[784,20,10]")) != key
    assert population_key(tiny_config("trainer.batch_size=10")) != key
    assert population_key(tiny_config("optimizer=adam")) != key
    assert population_key(tiny_config("model.activation=prelu")) is None
    assert population_key(tiny_config("trainer.resume=/nowhere/checkpoint.pt")) is None
    shifted = population_key(tiny_config("data.random_shift=1"))
    assert population_key(tiny_config("data.random_shift=1", "optimizer.lr=2")) == shifted
    assert population_key(tiny_config("data.random_shift=1", "trainer.seed=1")) != shifted  # one image variant per seed
    assert population_key(tiny_config("model.sizes=[784,1000,10]", "trainer.batch_size=300")) is None  # GEMM-bound on a CPU
    assert shape_key(tiny_config("model.sizes=[784,1000,10]", "trainer.batch_size=300")) is not None
    with pytest.raises(ValueError, match="shape_key"):
        train_population([tiny_config(), tiny_config("model.sizes=[784,20,10]")], ["a", "b"],
                         recorders=[NoRecorder(), NoRecorder()])


@pytest.mark.parametrize("name", sorted(COSTS))
@pytest.mark.parametrize("output", ("sigmoid", "softmax"))
def test_a_stacked_batchs_costs_and_errors_are_each_members(name, output):
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(4, 16, 10, generator=g, dtype=torch.float64) * 5, torch.randint(0, 10, (16,), generator=g)
    cost = COSTS[name]
    a = torch.sigmoid(z) if output == "sigmoid" else torch.softmax(z, dim=-1)
    for shared in (True, False):  # one mini-batch for every member, and one each
        labels = y if shared else torch.randint(0, 10, (4, 16), generator=g)
        onehot = torch.nn.functional.one_hot(labels, 10).double()
        of = (lambda k: (labels, onehot)) if shared else (lambda k: (labels[k], onehot[k]))  # noqa: E731
        torch.testing.assert_close(cost.means(z, a, onehot, output),
                                   torch.stack([cost.fn(z[k], of(k)[0], output) for k in range(4)]))
        torch.testing.assert_close(cost.delta(output, z, a, onehot),
                                   torch.stack([cost.delta(output, z[k], a[k], of(k)[1]) for k in range(4)]))
        together = cost.means_and_delta(z, a, onehot, output)  # what a population's step asks for at once
        torch.testing.assert_close(together[0], cost.means(z, a, onehot, output))
        torch.testing.assert_close(together[1], cost.delta(output, z, a, onehot))


def test_the_shared_first_layers_gradient_is_autograds_in_the_members_own_layout():
    from mlplab.nn.population import SharedLinear

    g = torch.Generator().manual_seed(0)
    x, W, b = (torch.randn(*shape, generator=g, dtype=torch.float64) for shape in ((7, 5), (3, 4, 5), (3, 4)))
    upstream = torch.randn(7, 12, generator=g, dtype=torch.float64)
    mine = [t.clone().requires_grad_() for t in (W, b)]
    (SharedLinear.apply(x, *mine) * upstream).sum().backward()
    plain = [t.clone().requires_grad_() for t in (W, b)]
    (torch.addmm(plain[1].reshape(-1), x, plain[0].reshape(12, 5).t()) * upstream).sum().backward()
    for ours, autograds in zip(mine, plain):
        torch.testing.assert_close(ours.grad, autograds.grad)
        assert ours.grad.is_contiguous()  # no copy left for the optimiser's step
    assert torch.autograd.gradcheck(lambda W, b: SharedLinear.apply(x, W, b), [t.clone().requires_grad_() for t in (W, b)])


def test_small_steps_train_on_one_cpu_thread_and_evaluate_on_all(tiny_config):
    from mlplab.training.device import evaluation_threads, training_threads

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        nielsen = tiny_config("model.sizes=[784,30,10]", "trainer.batch_size=10")  # 10·784·30 multiply-adds a step
        with training_threads(nielsen):
            assert torch.get_num_threads() == 1
            with evaluation_threads():  # evaluation's batches are large
                assert torch.get_num_threads() == 2
            assert torch.get_num_threads() == 1
        with training_threads(nielsen, members=32):  # 32 members side by side: one GEMM of 7.5 M multiply-adds
            assert torch.get_num_threads() == 2
        with training_threads(tiny_config("model.sizes=[784,100,10]", "trainer.batch_size=300")):
            assert torch.get_num_threads() == 2
        with training_threads(tiny_config("model.sizes=[784,30,10]", "trainer.batch_size=10", "trainer.threads=1")):
            with evaluation_threads():  # the user's own choice holds everywhere
                assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def sweep(data_root, folder, uri, launcher):
    done = run_cli(["-m", f"hydra/launcher={launcher}", f"data.root={data_root}", "data.validation_size=100",
                    "data.download=false", "trainer.epochs=2", "trainer.batch_size=30", f"tracking.uri={uri}",
                    f"hydra.sweep.dir={folder}", "optimizer.lr=0.1,0.5,2.0", "model.sizes=[784,30,10],[784,20,10]",
                    "model.activation=prelu,sigmoid"], cwd=folder.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    return {int(job.name): json.loads((job / "result.json").read_text()) for job in folder.iterdir() if job.is_dir()}


def test_the_population_launcher_gives_the_basic_launchers_results_and_tags_the_runs(data_root, tmp_path, mlflow_uri):
    from mlflow import MlflowClient

    together = sweep(data_root, tmp_path / "together", mlflow_uri, "population")
    alone = sweep(data_root, tmp_path / "alone", mlflow_uri, "basic")
    assert sorted(together) == sorted(alone) == list(range(12))
    for job in range(12):
        for key in ("status", "val_accuracy", "test_accuracy", "epochs_run"):
            assert together[job][key] == alone[job][key], (job, key)
        if alone[job]["test_loss"] is None:  # non-finite: written as null
            assert together[job]["test_loss"] is None
        else:
            assert together[job]["test_loss"] == pytest.approx(alone[job]["test_loss"], rel=1e-5)
        assert (tmp_path / "together" / str(job) / ".hydra" / "overrides.yaml").is_file()
    client = MlflowClient(mlflow_uri)
    runs = {together[job]["mlflow_run_id"]: job for job in range(12)}
    tags = {job: client.get_run(run_id).data.tags for run_id, job in runs.items()}
    assert all(t["mlflow.parentRunId"] == tags[0]["mlflow.parentRunId"] for t in tags.values())
    sigmoid = [job for job in range(12) if "population" in tags[job]]
    assert len(sigmoid) == 6  # prelu jobs train alone; the sigmoid jobs form one population per width
    assert len({tags[job]["population"] for job in sigmoid}) == 2
    assert all(tags[job]["population_size"] == "3" for job in sigmoid)


@pytest.mark.slow
def test_a_five_rate_q2_sweep_on_fashion_mnist_matches_its_solo_runs(tmp_path):
    from helpers.configs import compose_config

    rates = (0.0001, 0.001, 0.01, 0.1, 1.0)
    cfgs = [compose_config(["tracking=off", "trainer.epochs=4", "trainer.progress=false", "trainer.checkpoint=false",
                            f"optimizer.lr={lr}"]) for lr in rates]
    members, solos = solo_and_population(cfgs, tmp_path)
    for member, solo in zip(members, solos):
        assert member.result.status == solo.status == "finished"
        assert abs(member.result.val_accuracy - solo.val_accuracy) <= 0.003
    assert solos[-1].val_accuracy > 0.8  # real learning, not chance


def test_sigterm_ends_every_member_and_the_sweep_killed(data_root, tmp_path, mlflow_uri):
    from mlflow import MlflowClient

    from helpers.console import CONSOLE_SCRIPT, signal_when

    sweep_dir = tmp_path / "sweep"
    run = signal_when([str(CONSOLE_SCRIPT), "-m", f"data.root={data_root}", "data.validation_size=100",
                       "data.download=false", "trainer.epochs=100000", f"tracking.uri={mlflow_uri}",
                       f"hydra.sweep.dir={sweep_dir}", "optimizer.lr=0.1,0.5,1.0"],
                      tmp_path, sweep_dir / "2" / "checkpoint.pt", signal.SIGTERM)
    assert run.returncode == 143, run.stderr
    results = [json.loads((sweep_dir / str(job) / "result.json").read_text()) for job in range(3)]
    assert [r["status"] for r in results] == ["killed"] * 3
    client = MlflowClient(mlflow_uri)
    runs = [client.get_run(r["mlflow_run_id"]) for r in results]
    assert [r.info.status for r in runs] == ["KILLED"] * 3
    assert len({r.data.tags["population"] for r in runs}) == 1
    (parent,) = {r.data.tags["mlflow.parentRunId"] for r in runs}
    assert client.get_run(parent).info.status == "KILLED"


def test_the_launcher_groups_jobs_by_key_in_populations_of_at_most_max_members():
    from mlplab.training.population import groups

    assert groups(["a", "b", "a", None, "a", "b", None], max_members=2) == [[0, 2], [1, 5], [3], [4], [6]]
    assert groups(["a"] * 5, max_members=32) == [[0, 1, 2, 3, 4]]
    assert groups(["a"] * 3, max_members=1) == [[0], [1], [2]]
