"""Run profiles (every chapter): one set of sizes and step counts per kind of machine.

    smoke  seconds per notebook: checks that the code runs (tests, instructors' nbmake runs)
    cpu    minutes per notebook on a laptop CPU (the default without a GPU)
    gpu    the same lessons at a larger scale on one CUDA GPU (the default with one)

Pick one with `LABKIT_PROFILE=smoke|cpu|gpu`; notebooks call `get_profile()` once at the top.
A profile holds only numbers: the notebook still shows the real library call, e.g.
`SFTConfig(max_steps=profile.train_steps, learning_rate=profile.lora_lr, ...)`.
To add a field, give it a default here (the cpu value) and override it where it differs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    seed: int = 0
    train_steps: int = 150         # optimiser steps per training run
    batch_size: int = 8            # examples per step
    checkpoints_per_run: int = 4   # trainer_args saves this many checkpoints per run (0: none), to resume
                                   # after a restart
    eval_examples: int = 200       # held-out items scored per evaluation (fewer if a split has fewer)
    pretrain_demo_steps: int = 60      # chapter 0 re-runs the recipe briefly on a corpus slice (~1 min)
    pretrain_demo_docs: int = 20000
    shots: tuple[int, ...] = (0, 1, 3, 5)      # chapter 1; must contain 0 and 3
    virtual_tokens: int = 16                   # chapter 2
    virtual_token_sweep: tuple[int, ...] = (1, 4, 16)
    prompt_lr: float = 3e-2
    prefix_lr: float = 1e-2
    lora_r: int = 8                            # chapter 3 (and chapter 4's LoRA)
    # every projection: q/v-only LoRA learns the healthcare task more slowly (and on the full-length
    # documents of LabWorld v2 not at all); probes in data/labworld/README.md, tools/domain_task_curve.py
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                            "down_proj")
    lora_steps: int = 300                      # chapter 3's domain adapters (healthcare's copy clicks
                                               # at 200-300)
    lora_ranks: tuple[int, ...] = (1, 8, 64)   # the rank sweep, at train_steps on chapter 3's legal task
    lora_lr: float = 3e-3
    full_ft_lr: float = 1e-3
    adapter_lr: float = 1e-2                   # bottleneck adapters in `labkit bench` (chapter 9 sweeps)
    adapter_steps: int = 300                   # chapter 9: steps per run (the sentiment adapter sits on a
                                               # plateau, always one label, until about 200-250 steps)
    adapter_lrs: tuple[float, ...] = (1e-2, 3e-2)  # chapter 9: each method's learning-rate sweep
    adapter_lora_ranks: tuple[int, ...] = (2, 8)  # chapter 9: matched parameter budgets (LoRA q/v ranks)
    adapter_seeds: tuple[int, ...] = (0,)      # chapter 9: training seeds of the sentiment adapter (one in
                                               # cpu: no time for more)
    adapter_warmup_steps: int = 10             # chapter 9: linear warm-up, then a constant rate
    latency_repeats: int = 20                  # chapter 9: timed forward passes per prompt and model
    dapt_steps: int = 150                      # chapter 7: continued pretraining (DAPT, ¬DAPT, TAPT alike)
    dapt_lr: float = 1e-3
    dapt_label_sizes: tuple[int, ...] = (8, 32, 128)  # labeled examples per fine-tuning run
    # fine-tuning steps for each labeled-set size (aligned with dapt_label_sizes): where the validation
    # exact match stopped rising, plus a margin. Probes (tools/dapt_budget_probe.py: cpu, legal, full FT
    # lr 1e-3, batch 8, constant rate, 100 validation items): base n=8: 0.04 at 10, 0.06 at 20, 0.07 at
    # 30, 50 and 80; base n=32: 0.03 at 10, 0.15 at 20, 0.24 at 30, 0.31 at 50, 0.33 at 80 and 120;
    # base n=128: 0.15 at 25, 0.62 at 50, 0.69 at 75, 0.81 at 100, 0.93 at 150, 0.90 at 200; after 300
    # steps of DAPT: n=8: 0.23 at 10, 0.21 at 20, 0.20 at 30; n=32: 0.39 at 10, 0.60 at 20, 0.61-0.62 at
    # 30, 50, 80 and 120. The first cpu build at (40, 80, 200), with a 10% warm-up, still rose over the
    # last third on validation (DAPT n=32: 0.49 -> 0.57; ¬DAPT n=128: 0.80 -> 0.91), hence the margins.
    # At (40, 100, 240) base n=128 still rose over its last third (0.75 at 160 -> 0.84 at 240, interval
    # [0.03, 0.16]). The chapter's own recipe (labels drawn by seed 0, warm-up then constant), probed to
    # 480 steps (tools/dapt_budget_probe.py, WARMUP=24 at n=128, 10 at n=32): base n=128: 0.25 at 40,
    # 0.71 at 80, 0.74 at 120, 0.76 at 160, 0.82 at 200 and at every 40 steps to 440; DAPT (150 steps)
    # n=128: 0.74, 0.85, 0.84, 0.90 at 40-160, 0.95 at 200 and every 40 steps to 400; DAPT n=32:
    # 0.42-0.50 at 20-80, 0.49 at 100 and every 20 steps to 200. Hence n=32 -> 150 and n=128 -> 360:
    # two thirds of each budget (where the chapter's convergence check starts) past the plateau.
    # gpu's budgets are not measured (scaled up; batch 32 there).
    dapt_ft_steps: tuple[int, ...] = (40, 150, 360)
    dapt_seeds: int = 3                        # training seeds of the headline runs (smallest labeled set)
    dapt_curve_examples: int = 100             # validation items scored at each point of a fine-tuning run
    # chapter 8: every student copies the base's even layers and trains distill_steps steps on the first
    # distill_labeled training examples (the teacher: train_steps on all of them). Probes (cpu, legal,
    # batch 8, lr 1e-3, T 2, alpha 0.5, 200 test items): teacher 0.96; with 32 examples, hard labels 0.105 /
    # 0.095 (seeds 0 / 1) at 60 steps, 0.115 (seed 1) at 100; distillation 0.44 / 0.205 at 60, 0.39 (seed 1)
    # at 100: 100 steps, so that the distilled student is past its start on more seeds.
    distill_steps: int = 100                   # steps for each student (the same for all)
    distill_labeled: int = 32                  # labelled examples every student trains on
    distill_transfer: int = 512                # unlabelled prompts the teacher answers (sequence-level KD)
    distill_seeds: int = 3                     # training seeds of the main pair (hard labels, distillation)
    distill_lr: float = 1e-3
    distill_temperature: float = 2.0           # softens teacher and student distributions
    distill_temperatures: tuple[float, ...] = (1.0, 4.0)  # the sweep's other temperatures (first seed)
    distill_alpha: float = 0.5                 # weight of the soft (teacher) loss; 1 - alpha on hard labels
    distill_latency_repeats: int = 25          # timed generations per model and batch size, in turns
    # chapter 6. First cpu build with ranked samples (1 thread, loaded: 13.5 min): reward model 0.957 on
    # held-out pairs; RLOO at lr 2e-5 / 4e-5 (beta 0.05): win rate 0.625 / 0.637, KL 0.68 / 1.64,
    # reward-model score 2.03 / 2.50, gold 0.143 / 0.120, refusals 0; beta 0 at 2e-5 was RLOO's twin
    # (beta x KL = 0.03 reward units never bound); DPO at 5e-5 / 1e-4: win rate 0.695 / 0.778, refusals
    # 0.16 / 0.65. So RLOO swept beta at 4e-5, until chapter 5's SFT policy refused (see rl_lr below).
    rm_steps: int = 150                        # reward model steps (written pairs + ranked samples)
    rm_batch_size: int = 16                    # preference pairs per step
    rm_lr: float = 1e-3
    rm_policy_prompts: int = 1200              # train prompts whose SFT samples the gold judge ranks
    # RL steps: at 100 (lr 8e-5, on the SFT policy of LabWorld's per-request compliance replies) RLOO
    # sampled about 55 refusals in 1,600 replies and its greedy refusal rate did not move (0.226 -> 0.226)
    # although the reward model paid refusals +2.2 against -2.7: too few reinforced samples (issue 24).
    # At 200 steps on the SFT policy at sft_lr 6e-4 (which samples refusals 0.50 of the time, and refuses
    # 0.95 greedily): about 263 refusing samples in 3,200; greedy refusals 0.95 -> 1.0; 524 s for chapter 6
    rl_steps: int = 200                        # online RL (RLOO) from the SFT policy
    rl_generations: int = 4                    # completions per prompt (the group)
    rl_batch_size: int = 16                    # completions per step: rl_batch_size / rl_generations prompts
    # RL rate, probed on the 600-step SFT policy (cpu, 1 thread, issue 24): at 4e-5 the gold score still
    # rose at every probe to step 100, and the beta=0 run moved 1.1 nats from SFT with gold not below
    # RLOO's (+0.035): too short a run for the KL term to matter; at 8e-5 beta 0.05 and 0 over-optimise
    # (gold 0.16 / 0.18 against SFT's 0.38) while beta 0.5 and 2 keep it (1.04 / 1.26) (those probes ran
    # on the sft_lr 3e-4 policy; on the 6e-4 one, 200 steps:
    # beta 0.05 collapsed like beta 0, every reply a refusal, and the sweep chose beta 2, its grid's edge:
    # validation gold -0.595 / +0.830 / +1.280 at 0.05 / 0.5 / 2, correct rate 0.000 / 0.399 / 0.517
    # against SFT's 0.550. So the grid moved up one step: 0.05 repeated the beta=0 run, and the best
    # beta may lie above 2)
    rl_lr: float = 8e-5
    rl_beta: float = 0.5                       # KL coefficient
    rl_beta_sweep: tuple[float, ...] = (2.0, 8.0)  # the sweep's other betas (chosen on validation prompts)
    rl_max_completion: int = 24                # tokens per sampled completion
    dpo_steps: int = 150
    dpo_lr: float = 5e-5
    dpo_lr_sweep: tuple[float, ...] = (1e-4,)  # the sweep's other rates (chosen on validation prompts)
    dpo_beta: float = 0.1
    judge_prompts: int = 300                   # held-out prompts every policy answers
    probe_prompts: int = 32                    # prompts scored during RL (reward and gold curves)
    probe_every: int = 20                      # RL steps between two probes
    # chapter 4: full FT (full_ft_lr) and LoRA (lora_lr) each train train_steps steps, scored as they go.
    # Probes (cpu, legal, batch 8, constant rate after a 5-step warm-up, exact match on 100 test items):
    # full FT lr 1e-3: 0.02 at 10, 0.14 at 20, 0.23 at 60, 0.90 at 80, 0.96 at 100;
    # LoRA lr 3e-3: 0.06 at 25, 0.38 at 50, 0.75 at 75, 0.94 at 100, 1.00 at 125, 0.99 at 150.
    ch4_warmup_steps: int = 10     # linear warm-up, then a constant rate (every run of chapter 4)
    ch4_curve_every: int = 5       # steps between two scored points of a learning-forgetting curve
    ch4_icl_every: int = 25        # steps between two 3-shot ICL scores on it (the slowest score)
    curve_examples: int = 100      # items / documents per evaluation on that curve
    mix_general: float = 0.25      # share of general text mixed into the data (the mitigation)
    reply_max_new_tokens: int = 32  # chapter 5: longest chat reply generated
    # chapter 5: instruction-tuning steps and rate (each mixture). Probes (all seen families, batch 8, cpu,
    # issue 24): lr 1e-3 for 200 steps and 3e-3 for 300 forgot facts the base knows
    # (company_city 0.14 / 0.07 after tuning, 0.95 by the base's probe); 3e-4 / 300 kept more (0.36).
    # 300 steps (0.4 epoch) left the safety family under-learned: the saved policy refused 5.5% of its
    # samples on training's unsafe requests, whose demonstrations refuse in 48% (222/458), so RL in
    # chapter 6 had no refusal to reinforce; 600 steps: 28%, 900 steps: 44% (recipes/sft.py, issue 24)
    sft_steps: int = 600
    # rate chosen on the instruction *validation* split (190 rows of seen families, greedy, 600 steps,
    # cpu, 2 threads; /tmp probe of chapter 5's SFT call, issue 24): 3e-4 0.432, 6e-4 0.511, 1e-3 0.458
    sft_lr: float = 6e-4
    sft_batch_size: int = 8        # chapter 5: conversations per step
    family_counts: tuple[int, ...] = (1, 3, 6)  # chapter 5: mixtures smaller than "all seen families"
    sft_family_orders: int = 1     # chapter 5: random family orders per mixture size (the curve's mean)
    sft_seeds: int = 2             # chapter 5: training seeds of the all-families run (held-out gain)
    # chapter 10: a real open model (SmolLM2-135M-Instruct), tens of seconds per step on a laptop CPU
    real_eval_examples: int = 40               # word problems / entity sentences scored per strategy
    real_train_steps: int = 24                 # LoRA steps (about 10 s each on 2 CPU cores)
    real_batch_size: int = 4
    real_max_new_tokens: int = 160             # longest reply: step-by-step answers (at 96, 0.78 of them were
                                               # cut off mid-working in cpu); direct answers get a third
    real_lora_lr: float = 2e-3
    real_chapter_minutes: float = 10.0         # the chapter's time budget (a measured claim)
    # python -m labkit bench (labkit/bench.py): every method, the same steps, batch and sequence length
    bench_steps: int = 12                      # optimiser steps per method
    bench_warmup_steps: int = 2                # left out of the timing
    bench_batch_size: int = 8
    bench_seq_len: int = 128


# Presets hold only what differs from the defaults above.
PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", train_steps=4, batch_size=2, eval_examples=8, checkpoints_per_run=0,
                     pretrain_demo_steps=2, pretrain_demo_docs=300, shots=(0, 3),
                     virtual_tokens=4, virtual_token_sweep=(4,), lora_ranks=(4,), lora_steps=4,
                     latency_repeats=3, adapter_steps=4, adapter_lrs=(1e-2,), adapter_lora_ranks=(1, 2),
                     adapter_seeds=(0, 1), adapter_warmup_steps=1,
                     dapt_steps=4, dapt_label_sizes=(4, 8), dapt_ft_steps=(3, 3), dapt_seeds=2,
                     dapt_curve_examples=8, distill_steps=4,
                     distill_labeled=8, distill_transfer=8, distill_seeds=2, distill_temperatures=(4.0,),
                     distill_latency_repeats=3,
                     rm_steps=4, rm_batch_size=4, rm_policy_prompts=8, rl_steps=2, rl_batch_size=4,
                     rl_generations=2, rl_max_completion=8, dpo_steps=2, judge_prompts=16,
                     probe_prompts=4, probe_every=2,
                     ch4_warmup_steps=1, ch4_curve_every=2, ch4_icl_every=2, curve_examples=8, sft_steps=4,
                     family_counts=(2,),
                     reply_max_new_tokens=8,
                     real_eval_examples=4, real_train_steps=2, real_batch_size=2,
                     real_max_new_tokens=8, real_chapter_minutes=3.0,
                     bench_steps=3, bench_warmup_steps=1, bench_batch_size=2, bench_seq_len=32),
    "cpu": Profile("cpu"),
    "gpu": Profile("gpu", train_steps=1000, batch_size=32, eval_examples=1000,
                   virtual_token_sweep=(1, 4, 16, 64), lora_ranks=(1, 4, 16, 64), lora_steps=1000,
                   dapt_steps=2000, dapt_label_sizes=(32, 128, 512, 2000),
                   dapt_ft_steps=(160, 320, 640, 1000), dapt_curve_examples=200,
                   distill_steps=300, distill_seeds=5, distill_latency_repeats=50,
                   ch4_warmup_steps=50, ch4_curve_every=25, ch4_icl_every=100,
                   curve_examples=500, sft_steps=1000,
                   real_eval_examples=200, real_train_steps=300, real_batch_size=16,
                   real_max_new_tokens=256, real_lora_lr=5e-4, adapter_steps=1000,
                   adapter_lrs=(3e-3, 1e-2, 3e-2), adapter_seeds=(0, 1, 2),
                   bench_steps=30, bench_warmup_steps=5, bench_batch_size=32, bench_seq_len=256),
}


def get_profile(name: str | None = None) -> Profile:
    """The profile called `name`, else `$LABKIT_PROFILE`, else gpu if CUDA is available, else cpu."""
    asked = name or os.environ.get("LABKIT_PROFILE") or ""
    key = asked.strip().lower()
    if not key:
        import torch  # only needed to choose automatically

        key = "gpu" if torch.cuda.is_available() else "cpu"
    if key not in PROFILES:
        raise ValueError(f"Unknown LABKIT_PROFILE {asked!r}: choose one of {', '.join(PROFILES)}")
    return PROFILES[key]
