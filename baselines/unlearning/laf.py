"""LAF: label-agnostic forgetting with two embedding VAEs and a contrastive alignment to the original."""

from __future__ import annotations

from itertools import islice

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.core.functional import frozen_copy
from harness.core.method import Method, State
from harness.core.registry import register_method


class EmbeddingVAE(nn.Module):
    """A small Gaussian VAE over (standardised) penultimate embeddings."""

    def __init__(self, dim: int, hidden: int, latent: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, e: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encoder(e).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return self.decoder(z), mu, logvar

    def loss(self, e: Tensor, kld_weight: float) -> Tensor:
        out, mu, logvar = self(e)
        recon = (out - e).pow(2).sum(1).mean()
        kld = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1).mean()
        return recon + kld_weight * kld

    def bounded_error(self, e: Tensor) -> Tensor:
        """LAF's reconstruction score exp(m / (m + 1)) of the squared error m, per sample: bounded in [1, e)."""
        out, _, _ = self(e)
        m = (out - e).pow(2).sum(1)
        return torch.exp(m / (m + 1))


@register_method("laf")
class LAF(Method):
    """LAF (Shen et al., "Label-Agnostic Forgetting: A Supervision-Free Unlearning in Deep Models", ICLR 2024).

    No label of the forget or retain data is read (the protocol withholds them: ``reads_labels = False``).
      1. Embed all training data and the forget data with the original extractor; standardise with the all-data
         statistics; train a VAE on each (``vae_frac`` of the update budget each: the VAEs' updates
         spend the same budget as the model's).
      2. Alternate, one forget and one retain batch per round:
         * extractor unlearning: minimise s_all(retain) - s_forget(forget), where s_V is the bounded reconstruction
           error of VAE V: the retained embeddings stay where the all-data VAE reconstructs them, the forget
           embeddings leave the forget-data VAE's regime;
         * representation alignment: minimise mean_r (1 - cos(f(x_r), f_o(x_r))) - logsumexp_f((1 - cos(f(x_f),
           f_o(x_f))) / T) against the frozen original f_o: retained embeddings stay aligned, forget ones do not
           (the reference's contrastive form, with a batch mean in place of a sum).
    The classifier head is left as is: LAF+R's label-supervised head repair is not part of LAF.
    """

    family = "unlearning"
    protocols = frozenset({"unlearn"})
    hparams = dict(vae_frac=0.2, vae_batch=256, vae_lr=1e-3, kld_weight=0.025, hidden=128, latent=16, temperature=1.0,
                   lr_factor=0.1)  # lr_factor: docs/tuning/unlearning__*__smoke__laf.json
    reads_labels = False

    def unlearn(self, model: nn.Module, forget, retain, state: State) -> nn.Module:
        h = self.hparams
        teacher = frozen_copy(model)
        with torch.no_grad():
            e_forget = torch.cat([teacher.featurizer(b.x) for b in forget.batches(shuffle=False)])
            e_all = torch.cat([e_forget, *(teacher.featurizer(b.x) for b in retain.batches(shuffle=False))])
        mean, std = e_all.mean(0), e_all.std(0).clamp_min(1e-6)

        def embed(net: nn.Module, x: Tensor) -> Tensor:
            return (net.featurizer(x) - mean) / std

        vae_all, vae_forget = (self._fit_vae((e - mean) / std, state) for e in (e_all, e_forget))

        def unlearn_extractor(pair) -> Tensor:
            f, r = pair
            return vae_all.bounded_error(embed(model, r.x)).mean() - vae_forget.bounded_error(embed(model, f.x)).mean()

        def align(pair) -> Tensor:
            f, r = pair
            keep = 1 - F.cosine_similarity(model.featurizer(r.x), teacher.featurizer(r.x)).mean()
            leave = 1 - F.cosine_similarity(model.featurizer(f.x), teacher.featurizer(f.x))
            return keep - torch.logsumexp(leave / h["temperature"], dim=0)

        params = list(model.featurizer.parameters())
        ue, ra = (state.engine(params, h["lr_factor"]) for _ in range(2))  # two optimizers, as the reference
        rounds = state.budget.left // 2
        for pair in islice(zip(forget.forever(), retain.forever()), rounds):
            state.optimize(model, ue, unlearn_extractor, [pair])
            state.optimize(model, ra, align, [pair])
        return model

    def _fit_vae(self, embeddings: Tensor, state: State) -> EmbeddingVAE:
        h = self.hparams
        vae = EmbeddingVAE(embeddings.shape[1], h["hidden"], h["latent"]).to(embeddings.device)
        batch = min(h["vae_batch"], len(embeddings))
        steps = max(1, round(h["vae_frac"] * state.total_steps))

        def batches():
            while True:
                pick = torch.randint(len(embeddings), (batch,), generator=state.generator, device=embeddings.device)
                yield embeddings[pick]

        engine = state.engine(torch.optim.Adam(vae.parameters(), lr=h["vae_lr"]), count=False)
        state.optimize(vae, engine, lambda e: vae.loss(e, h["kld_weight"]), batches(), steps)
        return vae.eval().requires_grad_(False)
