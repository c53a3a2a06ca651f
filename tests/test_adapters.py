"""Bottleneck adapters (labkit.adapters, chapter 9) on tiny Llamas built from a config."""
import pytest
import torch

from labkit import adapters
from labkit.adapters import AdapterError, BottleneckConfig
from labkit.measure import count_params, fingerprint


@pytest.fixture
def tiny(make_tiny_llama):
    """conftest's tiny Llama with two layers (an adapter goes into every layer), in eval mode."""
    def make(hidden: int = 32, layers: int = 2, seed: int = 0):
        return make_tiny_llama(seed=seed, hidden_size=hidden, num_hidden_layers=layers).eval()
    return make


IDS = torch.randint(2, 64, (3, 10), generator=torch.Generator().manual_seed(1))


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


def perturb(model, name: str, seed: int = 0) -> None:
    """Give adapter `name` random weights (a stand-in for training)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in adapters.adapter_state_dict(model, name).values():
            t.copy_(torch.randn(t.shape, generator=g) * 0.5)


def test_bottleneck_shapes_and_zero_init():
    layer = adapters.Bottleneck(32, 4)
    assert layer.down.weight.shape == (4, 32) and layer.up.weight.shape == (32, 4)
    h = torch.randn(2, 5, 32)
    assert torch.equal(layer(h), h)
    with torch.no_grad():
        layer.up.weight.fill_(0.1)
    assert not torch.equal(layer(h), h)


def test_new_adapter_is_the_identity(tiny):
    model = tiny()
    before = logits(model)
    adapters.add_adapter(model, "a", BottleneckConfig(bottleneck_size=8))
    adapters.set_adapter(model, "a")
    assert torch.equal(logits(model), before)  # bit-identical, not merely close
    perturb(model, "a")
    assert not torch.allclose(logits(model), before)  # the adapter is really in the forward pass


def test_only_adapter_parameters_train(tiny):
    model = tiny(layers=2)
    _, total = count_params(model)
    adapters.add_adapter(model, "a", BottleneckConfig(bottleneck_size=8))
    adapters.add_adapter(model, "b", BottleneckConfig(bottleneck_size=4))
    adapters.set_adapter(model, "a")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".adapters.a." in n for n in trainable)
    d, m, layers = 32, 8, 2
    assert count_params(model)[0] == layers * (2 * d * m + m + d)
    adapters.set_adapter(model, "b")
    assert count_params(model)[0] == layers * (2 * d * 4 + 4 + d)
    # a backward pass gives gradients to the active adapter only
    model.train()
    model(input_ids=IDS, labels=IDS).loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == {n for n, p in model.named_parameters() if ".adapters.b." in n}


def test_save_load_round_trip(tiny, tmp_path):
    model = tiny()
    adapters.add_adapter(model, "a", BottleneckConfig(bottleneck_size=8, activation="gelu"))
    perturb(model, "a")
    adapters.set_adapter(model, "a")
    expected = logits(model)
    path = adapters.save_adapter(model, "a", tmp_path / "a.safetensors")

    fresh = tiny()  # the same base weights (same seed), no adapter
    adapters.load_adapter(fresh, path, "task")
    assert not any(p.requires_grad for p in fresh.parameters())  # loaded for inference
    assert not torch.equal(logits(fresh), expected)  # loaded, not yet active
    adapters.set_adapter(fresh, "task")
    assert torch.equal(logits(fresh), expected)


def test_swapping_changes_outputs_and_disable_gives_the_base(tiny):
    model = tiny()
    base = logits(model)
    for i, name in enumerate(["a", "b"]):
        adapters.add_adapter(model, name, BottleneckConfig(bottleneck_size=8))
        perturb(model, name, seed=i)
    adapters.set_adapter(model, "a")
    out_a = logits(model)
    adapters.set_adapter(model, "b")
    out_b = logits(model)
    assert not torch.allclose(out_a, out_b)
    assert adapters.active_adapter(model) == "b"
    with adapters.disable_adapter(model):
        assert torch.equal(logits(model), base)
    assert torch.equal(logits(model), out_b)  # re-enabled after the block
    adapters.set_adapter(model, "a")
    assert torch.equal(logits(model), out_a)


def test_base_weights_untouched_by_training_and_unload_restores_them(tiny):
    model = tiny()
    before = fingerprint(model)
    adapters.add_adapter(model, "a", BottleneckConfig(bottleneck_size=8))
    adapters.set_adapter(model, "a")
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        model(input_ids=IDS, labels=IDS).loss.backward()
        opt.step()
        opt.zero_grad()
    assert adapters.adapter_state_dict(model, "a")["model.layers.0.mlp.up.weight"].abs().sum() > 0
    adapters.unload(model)
    assert not adapters.adapter_layers(model)
    assert fingerprint(model) == before


def test_loading_on_another_hidden_size_names_both_sizes(tiny, tmp_path):
    model = tiny(hidden=32)
    adapters.add_adapter(model, "a", BottleneckConfig(bottleneck_size=8))
    path = adapters.save_adapter(model, "a", tmp_path / "a.safetensors")
    other = tiny(hidden=48)
    with pytest.raises(AdapterError, match=r"hidden_size=32.*hidden_size=48"):
        adapters.load_adapter(other, path, "a")
    assert adapters.adapter_names(other) == []


def test_loading_on_another_depth_fails_clearly(tiny, tmp_path):
    model = tiny(layers=2)
    adapters.add_adapter(model, "a", BottleneckConfig(bottleneck_size=8))
    path = adapters.save_adapter(model, "a", tmp_path / "a.safetensors")
    deeper = tiny(layers=3)
    with pytest.raises(AdapterError, match="2 adapted sublayers.*3"):
        adapters.load_adapter(deeper, path, "a")
    assert adapters.adapter_names(deeper) == []


def test_clear_errors_for_bad_names_and_targets(tiny, tmp_path):
    model = tiny()
    with pytest.raises(AdapterError, match="no adapter named 'x'"):
        adapters.set_adapter(model, "x")
    with pytest.raises(AdapterError, match="no sublayer named 'ffn'"):
        adapters.add_adapter(model, "a", BottleneckConfig(targets=("ffn",)))
    adapters.add_adapter(model, "a")
    with pytest.raises(AdapterError, match="already has an adapter named 'a'"):
        adapters.add_adapter(model, "a")
    not_adapter = tmp_path / "x.safetensors"
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(2)}, str(not_adapter))
    with pytest.raises(AdapterError, match="not a bottleneck adapter file"):
        adapters.load_adapter(model, not_adapter, "b")


def test_houlsby_placement_adapts_attention_too(tiny):
    model = tiny(layers=2)
    before = logits(model)
    adapters.add_adapter(model, "h", BottleneckConfig(bottleneck_size=4, targets=("self_attn", "mlp")))
    adapters.set_adapter(model, "h")
    assert len(adapters.adapter_layers(model)) == 4
    assert torch.equal(logits(model), before)
    perturb(model, "h")
    assert not torch.allclose(logits(model), before)


@pytest.mark.parametrize("sublayer, norm_after", [("mlp", None), ("self_attn", "post_attention_layernorm")])
def test_adapter_acts_on_the_sublayer_output_before_the_residual_add(tiny, sublayer, norm_after):
    """Houlsby's placement: layer output = residual + adapter(sublayer output). An adapter applied
    after the residual addition (Pfeiffer's configuration reads there) gives another output."""
    model = tiny(layers=1)
    adapters.add_adapter(model, "h", BottleneckConfig(bottleneck_size=4, targets=(sublayer,)))
    adapters.set_adapter(model, "h")
    perturb(model, "h")
    layer = model.model.layers[0]
    wrapper = getattr(layer, sublayer)
    seen = {}
    wrapper.base_layer.register_forward_hook(
        lambda m, i, o: seen.update(sub_out=o[0] if isinstance(o, tuple) else o))
    if norm_after:  # attention: the residual stream after attention is the next norm's input
        layer.post_attention_layernorm.register_forward_hook(lambda m, i, o: seen.update(after=i[0]))
        layer.register_forward_pre_hook(lambda m, args, kwargs: seen.update(residual=kwargs.get(
            "hidden_states", args[0] if args else None)), with_kwargs=True)
    else:           # mlp: the layer's output; its residual is the post-attention norm's input
        layer.post_attention_layernorm.register_forward_hook(lambda m, i, o: seen.update(residual=i[0]))
        layer.register_forward_hook(lambda m, i, o: seen.update(after=o[0] if isinstance(o, tuple) else o))
    logits(model)
    adapter = wrapper.adapters["h"]
    with torch.no_grad():
        houlsby = seen["residual"] + adapter(seen["sub_out"])
        after_residual = adapter(seen["residual"] + seen["sub_out"])
    assert torch.allclose(seen["after"], houlsby, atol=1e-5)
    assert not torch.allclose(seen["after"], after_residual, atol=1e-3)


def test_trains_with_sft_trainer(tiny, tmp_path):
    """The adapter trains under TRL's SFTTrainer like any model, and only it changes."""
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from trl import SFTConfig, SFTTrainer

    words = ["<pad>", "<eos>", "good", "bad", "review", ":", "positive", "negative", "Sentiment"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")
    model = tiny()
    base_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    adapters.add_adapter(model, "s", BottleneckConfig(bottleneck_size=8))
    adapters.set_adapter(model, "s")
    rows = [{"prompt": f"review : {w} Sentiment :", "completion": f" {a}"}
            for w, a in [("good", "positive"), ("bad", "negative")]] * 8
    args = SFTConfig(
        output_dir=str(tmp_path),
        max_steps=3,
        learning_rate=1e-2,
        per_device_train_batch_size=4,
        save_strategy="no",
        report_to=[],
        bf16=False,
        use_cpu=True,
        activation_checkpointing=False,
        logging_steps=1,
        max_length=16,
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer
    )
    trainer.train()
    assert trainer.state.global_step == 3
    assert adapters.adapter_state_dict(model, "s")["model.layers.0.mlp.up.weight"].abs().sum() > 0
    adapters.unload(model)
    assert all(torch.equal(p, base_before[n]) for n, p in model.named_parameters())
