"""nanoGPT beside charrnn: nanoGPT's model trained for the same wall-clock budget on the same
split of tiny-shakespeare, scored the same way, one row appended to bench_quality's RESULTS.

  pip install torch==2.13.0     # benchmark reference only; not a charrnn dependency
  git clone https://github.com/karpathy/nanoGPT ../nanoGPT    # any checkout; charrnn ships none
  python benchmarks/bench_nanogpt.py --nanogpt ../nanoGPT --minutes 10
  python benchmarks/bench_quality.py shakespeare --minutes 10   # the charrnn rows
  python benchmarks/bench_quality.py table

Data: bench_quality.prepare's dataset (train 90%, val 5%, test 5%).  The model trains on
`charrnn dump DATA --split train` only, encoded with charrnn's own vocabulary (vocab.json's
"symbols", in id order), so losses are nats per character over the same alphabet.  Batches
are random windows of block_size+1 characters, as nanoGPT's get_batch draws them.

Model and optimiser: nanoGPT's model.py, imported from the checkout --nanogpt names (results
so far: its commit 3adf61e, model.py last changed in f08abb4), with the config of
nanoGPT's config/train_shakespeare_char.py scaled down for a CPU as its README suggests
(--device=cpu --compile=False --eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12
--n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0),
except block_size 256 (a context of 256, so the 256-window scoring below is in its range):
4 layers x 4 heads x 128, batch 12, no dropout, no biases (train.py's bias=False), float32,
no torch.compile, torch.set_num_threads(os.cpu_count()).  AdamW as nanoGPT configures it
(weight decay 0.1 on matrices only, lr 1e-3, betas (0.9, 0.99)), gradients clipped at 1.0,
100 warm-up iterations, then cosine decay to 1e-4 at lr_decay_iters.

Time budget: training runs until --minutes of wall-clock have passed (periodic validation
passes included, start-up and final scoring not).  As a user would set max_iters to fill the
time, the iterations after the first are timed, at least 20 and 5% of the budget as charrnn's
own plan (charrnn/training/budget.py) but no further than the end of warm-up (iteration 100, where
the cosine starts), and lr_decay_iters is set to the iterations that fit in the budget at
that pace, evaluations included (at least warm-up + 1).  Every 250 iterations, at the plan
and at the end, the whole validation split is scored in windows of 256 (about what nanoGPT's
20-batch estimate costs); the best state by it is kept.  A plan made while the load changes
is off either way (the row records "lr_decay_iters" beside "steps"), and torch's two threads
slow down ~15x while another process busies a core: run it on a quiet machine.

Scores (of the final model; the best-by-validation one too, under "best_model", when it is
an earlier one): "last10_windows" is bench_quality.windows_nats' definition: val + test text
(the last 10% = nanoGPT's own val split) in consecutive windows of 256 predictions, each
from an empty context (x = ids[i*256:(i+1)*256], targets one further), mean nats per
predicted character.  "test" (the last 5%) is scored the same way, not in one pass as
charrnn's rows are: a transformer has no state to carry across windows.
"""

import argparse
import contextlib
import copy
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_quality as bq  # noqa: E402

# -----------------------------------------------------------------------------
# fixed settings (nanoGPT's train_shakespeare_char.py / train.py values)
LEARNING_RATE = 1e-3
MIN_LR = 1e-4
BETAS = (0.9, 0.99)
WEIGHT_DECAY = 0.1
GRAD_CLIP = 1.0
WARMUP_ITERS = 100
EVAL_INTERVAL = 250
PLAN_ITERS = 20  # at least this many iterations timed to plan lr_decay_iters ...
PLAN_SHARE = 0.05  # ... and this share of the budget, up to the end of warm-up
WINDOW = 256  # scoring window, as bench_quality.windows_nats

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
GET_NANOGPT = (
    "git clone https://github.com/karpathy/nanoGPT ../nanoGPT && "
    "git -C ../nanoGPT checkout 3adf61e  (the commit benchmarks/RESULTS.md measured)"
)
p.add_argument(
    "--nanogpt",
    default=os.environ.get("NANOGPT_DIR"),
    metavar="DIR",
    help="a checkout of karpathy/nanoGPT (its model.py is imported from there) "
    "[default: $NANOGPT_DIR]",
)
p.add_argument("--minutes", type=float, default=10, help="training wall-clock budget")
p.add_argument("--seed", type=int, default=0, help="torch seed (init and batches)")
p.add_argument("--batch-size", type=int, default=12, help="windows per iteration")
p.add_argument("--block-size", type=int, default=256, help="context length")
p.add_argument("--n-layer", type=int, default=4, help="transformer blocks")
p.add_argument("--n-head", type=int, default=4, help="attention heads")
p.add_argument("--n-embd", type=int, default=128, help="embedding width")
p.add_argument("--dropout", type=float, default=0.0, help="dropout")
p.add_argument("--name", help="row name (default nanogpt-<minutes>m-s<seed>)")
a = p.parse_args()
name = a.name or f"nanogpt-{a.minutes:g}m-s{a.seed}"
if a.block_size < WINDOW:
    p.error(f"--block-size must be at least the scoring window, {WINDOW}")

if not a.nanogpt or not os.path.isfile(os.path.join(a.nanogpt, "model.py")):
    where = f"--nanogpt {a.nanogpt}: no model.py there" if a.nanogpt else "no nanoGPT checkout"
    p.error(f"{where}; give one with --nanogpt DIR or NANOGPT_DIR, e.g. {GET_NANOGPT}")
sys.path.insert(0, os.path.abspath(a.nanogpt))

import torch  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402  (nanoGPT's model.py, from the checkout)

torch.manual_seed(a.seed)
torch.set_num_threads(os.cpu_count())
t_start = time.monotonic()

# -----------------------------------------------------------------------------
# data: charrnn's split and vocabulary
data, text = bq.prepare("tinyshakespeare.txt")
with open(data / "vocab.json", encoding="utf-8") as f:
    vocab = json.load(f)
if vocab.get("jamo"):
    sys.exit("a jamo dataset: its ids are not characters")
stoi = {c: i for i, c in enumerate(vocab["symbols"])}


def encode(s):
    unknown = set(s) - stoi.keys()
    if unknown:
        sys.exit(f"characters outside the vocabulary: {sorted(unknown)[:10]}")
    return torch.tensor([stoi[c] for c in s], dtype=torch.long)


train = encode(bq.charrnn("dump", data, "--split", "train", capture=True))
val = encode(text["val"].read_text(encoding="utf-8"))
test = encode(text["test"].read_text(encoding="utf-8"))
last10 = torch.cat([val, test])  # as windows_nats joins the two texts


def get_batch():
    ix = torch.randint(len(train) - a.block_size, (a.batch_size,))
    x = torch.stack([train[i : i + a.block_size] for i in ix])
    y = torch.stack([train[i + 1 : i + 1 + a.block_size] for i in ix])
    return x, y


@torch.no_grad()
def windows_nats(ids, window=WINDOW):
    """Consecutive windows of ``window`` predictions, each from an empty context."""
    model.eval()
    n = (len(ids) - 1) // window
    x, y = ids[: n * window].view(n, window), ids[1 : n * window + 1].view(n, window)
    total = 0.0
    for b in range(0, n, 64):
        _, loss = model(x[b : b + 64], y[b : b + 64])
        total += loss.item() * y[b : b + 64].numel()
    model.train()
    return {"window": window, "windows": n, "nats_per_char": total / (n * window)}


# -----------------------------------------------------------------------------
# model and optimiser (nanoGPT's own; its prints go to stderr, stdout is the row)
config = GPTConfig(
    block_size=a.block_size,
    vocab_size=len(stoi),
    n_layer=a.n_layer,
    n_head=a.n_head,
    n_embd=a.n_embd,
    dropout=a.dropout,
    bias=False,
)
with contextlib.redirect_stdout(sys.stderr):
    model = GPT(config)
    optimizer = model.configure_optimizers(WEIGHT_DECAY, LEARNING_RATE, BETAS, "cpu")
params = sum(t.numel() for t in model.parameters())
lr_decay_iters = None  # planned once enough iterations are timed


def get_lr(it):  # nanoGPT's cosine with warm-up
    if it < WARMUP_ITERS:
        return LEARNING_RATE * (it + 1) / (WARMUP_ITERS + 1)
    if it > lr_decay_iters:
        return MIN_LR
    decay_ratio = (it - WARMUP_ITERS) / (lr_decay_iters - WARMUP_ITERS)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return MIN_LR + coeff * (LEARNING_RATE - MIN_LR)


# -----------------------------------------------------------------------------
# training loop, until the budget is spent
budget = a.minutes * 60
evals, best_state = [], None


def evaluate(it):
    global best_state
    loss = windows_nats(val)["nats_per_char"]
    if not evals or loss < min(e[1] for e in evals):
        best_state = copy.deepcopy(model.state_dict())
    evals.append((it, loss))
    print(f"step {it}: val {loss:.4f}", file=sys.stderr, flush=True)


X, Y = get_batch()
start = time.monotonic()
it = 0
while time.monotonic() - start < budget:
    if it == 1:
        t_plan = time.monotonic()
    if lr_decay_iters is None and (
        it == WARMUP_ITERS or it > PLAN_ITERS and time.monotonic() - t_plan >= PLAN_SHARE * budget
    ):
        per_iter = (time.monotonic() - t_plan) / (it - 1)
        t_eval = time.monotonic()
        evaluate(it)  # timed: its share of an iteration goes into the plan
        per_iter += (time.monotonic() - t_eval) / EVAL_INTERVAL
        left = budget - (time.monotonic() - start)
        lr_decay_iters = max(it + int(left / per_iter), WARMUP_ITERS + 1)
        print(f"{per_iter:.3f} s/iter: lr_decay_iters {lr_decay_iters}", file=sys.stderr)
    if it and it % EVAL_INTERVAL == 0:
        evaluate(it)
    lr = get_lr(it)
    for group in optimizer.param_groups:
        group["lr"] = lr
    _, loss = model(X, Y)
    X, Y = get_batch()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    it += 1
    if it % 50 == 0:
        print(
            f"iter {it}: loss {loss.item():.4f}, lr {lr:.2e}, {time.monotonic() - start:.0f}s",
            file=sys.stderr,
            flush=True,
        )
train_s = time.monotonic() - start
if not evals or evals[-1][0] != it:
    evaluate(it)
wall = time.monotonic() - t_start

# -----------------------------------------------------------------------------
# scoring, and the row


def scores():
    t = windows_nats(test)
    t["bpc"] = t["nats_per_char"] / math.log(2)
    return {"test": t, "last10_windows": windows_nats(last10)}


best_step, best_loss = min(evals, key=lambda e: e[1])
row = {
    "name": name,
    "model": f"nanoGPT {a.n_layer}x{a.n_embd} ctx{a.block_size}",
    "params": params,
    "corpus": "tinyshakespeare.txt",
    "seed": a.seed,
    "minutes": a.minutes,
    "steps": it,
    "lr_decay_iters": lr_decay_iters,
    "wall_s": round(wall, 1),
    "train_s": round(train_s, 1),
    "best_step": best_step,
    "val_loss": best_loss,
    "val_bpc_char": best_loss / math.log(2),
    "config": {
        "batch_size": a.batch_size,
        "block_size": a.block_size,
        "n_layer": a.n_layer,
        "n_head": a.n_head,
        "n_embd": a.n_embd,
        "dropout": a.dropout,
        "bias": False,
        "lr": LEARNING_RATE,
        "min_lr": MIN_LR,
        "betas": BETAS,
        "weight_decay": WEIGHT_DECAY,
        "grad_clip": GRAD_CLIP,
        "warmup_iters": WARMUP_ITERS,
        "threads": torch.get_num_threads(),
    },
    "scored": "final model; test in windows of 256 (no state to carry), not one pass",
    **scores(),
}
if best_step != it:
    model.load_state_dict(best_state)
    row["best_model"] = {"step": best_step, **scores()}
row.update(date=time.strftime("%Y-%m-%d %H:%M"), machine=bq.machine(), torch=torch.__version__)
bq.WORK.mkdir(parents=True, exist_ok=True)
with open(bq.RESULTS, "a") as f:
    f.write(json.dumps(row) + "\n")
print(json.dumps(row), flush=True)
