"""`FitResult`: posterior draws of one SS-MELSM fit as an ``xarray.DataTree`` (ArviZ 1.x
conventions), with PIPs, Bayes factors, convergence diagnostics and timings."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import arviz_base
import arviz_stats  # not `import arviz`: that also imports arviz_plots and matplotlib (start-up)
import numpy as np
import pandas as pd
import xarray as xr

from .data import MelsmData
from .diagnostics import HYPER_VARS, RHAT_MAX, Verdict, judge  # noqa: F401 - the rule lives there
from .indicators import indicator_combos
from .priors import Priors, bayes_factor


@dataclass(eq=False)
class FitResult:
    """One fitted dataset. ``tree`` holds ``posterior`` and ``sample_stats`` groups (and
    ``log_likelihood`` once :meth:`add_log_likelihood` ran)."""

    tree: xr.DataTree
    data: MelsmData
    priors: Priors
    structure: object
    settings: object
    diagnostics: dict[str, xr.Dataset]  # "rhat" / "ess_bulk" / "ess_tail" -> per-variable values
    compile_s: float
    sample_s: float
    seed: object = None
    extra: dict = field(default_factory=dict)
    #: extensions after failing the convergence rule: blocks of ``settings.draws`` draws
    #: added, plus a rerun at a higher target_accept where the first attempt diverged
    extensions: int = 0
    #: 1 when the fit was rerun from the start with smaller steps (its draws are the rerun's)
    reruns: int = 0

    # ------------------------------------------------------------------ views
    @property
    def posterior(self) -> xr.Dataset:
        return self.tree["posterior"].to_dataset()

    @property
    def sample_stats(self) -> xr.Dataset:
        return self.tree["sample_stats"].to_dataset()

    @cached_property
    def pip(self) -> xr.DataArray:
        """Rao-Blackwellised posterior inclusion probability, (group, scale_random)."""
        return self.posterior["incl_prob"].mean(("chain", "draw")).rename("pip")

    @property
    def bf10(self) -> xr.DataArray:
        return xr.apply_ufunc(bayes_factor, self.pip, kwargs={"pi": self.priors.pi}).rename("bf10")

    @property
    def divergences(self) -> int:
        return int(self.sample_stats["diverging"].sum())

    @property
    def rhat_max(self) -> float:
        """Largest R-hat over the hyperparameters (fixed effects, SDs, correlations)."""
        values = [self.diagnostics["rhat"][v] for v in HYPER_VARS if v in self.diagnostics["rhat"]]
        return float(np.nanmax(np.concatenate([np.ravel(v.values) for v in values])))

    @property
    def ess_bulk_min(self) -> float:
        values = [self.diagnostics["ess_bulk"][v] for v in HYPER_VARS if v in self.diagnostics["ess_bulk"]]
        return float(np.nanmin(np.concatenate([np.ravel(v.values) for v in values])))

    @property
    def draws_used(self) -> int:
        """Kept draws per chain (``settings.draws`` times 1 + the draw-adding extensions)."""
        return int(self.posterior.sizes["draw"])

    @cached_property
    def verdict(self) -> Verdict:
        """The convergence rule of :mod:`simstudy.model.diagnostics` applied to this fit."""
        return judge(self.diagnostics, self.divergences, int(self.posterior.sizes["chain"]))

    @property
    def converged(self) -> bool:
        return self.verdict.converged

    @property
    def status(self) -> str:
        return "ok" if self.converged else "not_converged"

    # ------------------------------------------------------------------ tables
    def groups_table(self, threshold: float = 0.75) -> pd.DataFrame:
        """One row per group: n, PIP and BF10 per scale effect, estimated within-group SD
        (posterior mean, scale covariates at the group's values), group mean, flagged."""
        post = self.posterior
        table = pd.DataFrame(
            {
                "group": self.data.group_labels,
                "n": self.data.group_sizes,
                "observed_sd": self.data.stats.y_sd,
            }
        )
        names = list(self.pip["scale_random"].values)
        for k, name in enumerate(names):
            suffix = "" if len(names) == 1 else f"[{name}]"
            table["pip" + suffix] = self.pip.values[:, k]
            table["bf10" + suffix] = self.bf10.values[:, k]
        table["within_sd"] = post["group_sd"].mean(("chain", "draw")).values
        table["mean"] = post["group_mean"].mean(("chain", "draw")).values
        pip_cols = [c for c in table.columns if c.startswith("pip")]
        table["flagged"] = (table[pip_cols] >= threshold).any(axis=1)
        return table

    def flagged(self, threshold: float = 0.75) -> pd.DataFrame:
        table = self.groups_table(threshold)
        return table[table["flagged"]].sort_values(table.columns[3], ascending=False)

    def summary_table(self, ci_prob: float = 0.95) -> pd.DataFrame:
        """Fixed effects, random-effect SDs, correlations and (under a Beta hyperprior) pi, with
        intervals, R-hat and ESS."""
        var_names = [v for v in HYPER_VARS if v in self.posterior]
        post = self.posterior[var_names]
        if "corr" in post:
            # keep each correlation once (lower triangle)
            post = post.drop_vars("corr")
        frames = [arviz_stats.summary(post, ci_prob=ci_prob, kind="all", round_to="none")]
        if "corr" in self.posterior:
            corr = self.posterior["corr"]
            names = list(corr["random_effect"].values)
            pairs = {}
            for i in range(len(names)):
                for j in range(i):
                    pairs[f"corr[{names[j]}, {names[i]}]"] = corr.isel(random_effect=i, random_effect_bis=j).drop_vars(
                        ["random_effect", "random_effect_bis"], errors="ignore"
                    )
            if pairs:
                frames.append(arviz_stats.summary(xr.Dataset(pairs), ci_prob=ci_prob, kind="all", round_to="none"))
        return pd.concat(frames)

    # ------------------------------------------------------------------ model comparison
    def add_log_likelihood(self, seed: int = 0) -> xr.DataTree:
        """Add the pointwise log-likelihood (per observation, ivd's definition) to ``tree``."""
        import jax

        from .ssmelsm import pointwise_loglik

        if "log_likelihood" in self.tree.children:
            return self.tree
        post = self.posterior
        draws = {k: post[k].values for k in ("beta", "eta", "u", "t")}
        if "combo_prob" in post:
            draws["combo_prob"] = post["combo_prob"].values
        else:
            p = post["incl_prob"].values[..., 0]
            draws["combo_prob"] = np.stack([1.0 - p, p], axis=-1)
        ll = pointwise_loglik(self.data, draws, jax.random.PRNGKey(seed))
        ds = xr.Dataset({self.data.response: (("chain", "draw", "obs"), ll)},
                        coords={"chain": post["chain"], "draw": post["draw"]})
        self.tree["log_likelihood"] = xr.DataTree(ds)
        return self.tree

    def loo(self, seed: int = 0, *, keep_weights: bool = False):
        """PSIS-LOO on the pointwise log-likelihood: ArviZ's ``ELPDDataLOO`` with the numbers of
        ``az.loo(tree, pointwise=True)``, computed for all observations at once
        (:func:`simstudy.model.loo.psis_loo`; smoothed log weights only with ``keep_weights``)."""
        from .loo import psis_loo

        self.add_log_likelihood(seed)
        return psis_loo(self.tree, var_name=self.data.response, keep_weights=keep_weights)

    def waic(self, seed: int = 0) -> dict:
        """WAIC from the same pointwise log-likelihood: elpd_waic, p_waic, waic (deviance scale)."""
        from .loo import waic_arrays

        self.add_log_likelihood(seed)
        ll = self.tree["log_likelihood"][self.data.response].values
        return waic_arrays(ll.reshape(-1, ll.shape[-1]))

    def to_netcdf(self, path, *, log_lik_dtype: str | None = "float32") -> None:
        """Write ``tree`` (h5netcdf). The pointwise log-likelihood, kept only for model
        comparison, is stored as ``log_lik_dtype`` (float32 by default: half the size; LOO and
        WAIC change by float32 rounding only, ~1e-7 relative per value); None keeps float64."""
        encoding = {}
        if log_lik_dtype is not None and "log_likelihood" in self.tree.children:
            encoding["/log_likelihood"] = {name: {"dtype": log_lik_dtype}
                                           for name in self.tree["log_likelihood"].data_vars}
        self.tree.to_netcdf(path, engine="h5netcdf", encoding=encoding or None)


# ----------------------------------------------------------------------------- builders
def _dims(data: MelsmData) -> tuple[dict, dict]:
    re_names = [f"location:{n}" for n in data.z_loc_names] + [f"scale:{n}" for n in data.z_scale_names]
    coords = {
        "group": data.group_labels,
        "location_fixed": list(data.x_names),
        "scale_fixed": list(data.w_names),
        "location_random": list(data.z_loc_names),
        "scale_random": list(data.z_scale_names),
        "random_effect": re_names,
        "random_effect_bis": re_names,
    }
    combos = ["".join(str(int(c)) for c in row) for row in indicator_combos(data.dims["K"])]
    coords["combo"] = combos
    dims = {
        "beta": ["location_fixed"],
        "eta": ["scale_fixed"],
        "tau": ["random_effect"],
        "corr": ["random_effect", "random_effect_bis"],
        "u": ["group", "location_random"],
        "t": ["group", "scale_random"],
        "incl_prob": ["group", "scale_random"],
        "combo_prob": ["group", "combo"],
        "group_mean": ["group"],
        "group_sd": ["group"],
        "pi": [],
    }
    return dims, coords



def _posterior_dict(records: dict, i: int) -> dict:
    out = {k: v[i] for k, v in records.items() if k != "L_corr"}
    if "L_corr" in records:
        L = records["L_corr"][i]
        out["corr"] = np.einsum("...ik,...jk->...ij", L, L)
    return out


def batch_diagnostics(records: dict, pips: bool = True) -> xr.Dataset:
    """R-hat, bulk and tail ESS for the hyperparameters (and, with ``pips``, the per-draw
    inclusion probabilities) of every dataset in a batch: variables with dims
    (dataset, ...). ArviZ's numbers (:mod:`simstudy.model.mcmc_stats`, all quantities at once)."""
    from .mcmc_stats import diagnostics

    wanted = ("beta", "eta", "tau", "pi", "incl_prob") if pips else ("beta", "eta", "tau", "pi")
    variables = {}
    for name, value in records.items():
        if name in wanted:
            variables[name] = np.asarray(value)
        elif name == "L_corr":
            variables["corr"] = np.einsum("...ik,...jk->...ij", value, value)
    per_stat = {stat: {} for stat in ("rhat", "ess_bulk", "ess_tail")}
    for name, v in variables.items():  # (dataset, chain, draw, ...) -> (dataset, ..., chain, draw)
        dims = ("dataset",) + tuple(f"{name}_dim{d}" for d in range(v.ndim - 3))
        for stat, values in diagnostics(np.moveaxis(v, (1, 2), (-2, -1))).items():
            per_stat[stat][name] = (dims, values)
    return xr.concat([xr.Dataset(per_stat[stat]) for stat in ("rhat", "ess_bulk", "ess_tail")],
                     dim=pd.Index(["rhat", "ess_bulk", "ess_tail"], name="diagnostic"))


def _unit_diagnostics(diag: xr.Dataset, i: int, dims: dict, coords: dict) -> dict[str, xr.Dataset]:
    out = {}
    for stat in ("rhat", "ess_bulk", "ess_tail"):
        variables = {}
        for name, da in diag.sel(diagnostic=stat).isel(dataset=i).data_vars.items():
            d = dims.get(name, [f"{name}_dim{k}" for k in range(da.ndim)])  # e.g. a sampled pi: ()
            variables[name] = xr.DataArray(da.values, dims=d, coords={k: coords[k] for k in d if k in coords})
        out[stat] = xr.Dataset(variables)
    return out


def build_results(datasets, priors_list, structure, settings, records, stats, *, compile_s, sample_s, seeds,
                  pip_diagnostics: bool = True, extensions=None, scalings=None):
    """Split batched sampler output into one :class:`FitResult` per dataset. ``sample_s``:
    the batch's seconds (shared equally) or one value per dataset; ``extensions``: per dataset;
    ``scalings``: per dataset, the :class:`~simstudy.model.response_scale.ResponseScaling` the
    draws were sampled on (mapped back to the data's scale here; R-hat and ESS do not change)."""
    diag = batch_diagnostics(records, pips=pip_diagnostics)
    results = []
    shares = list(sample_s) if np.ndim(sample_s) else [sample_s / len(datasets)] * len(datasets)
    extensions = list(extensions) if extensions is not None else [0] * len(datasets)
    for i, (data, priors) in enumerate(zip(datasets, priors_list)):
        dims, coords = _dims(data)
        posterior = _posterior_dict(records, i)
        if scalings is not None:
            posterior = scalings[i].posterior(posterior, structure.q_loc)
        sample_stats = {k: v[i] for k, v in stats.items() if k != "warmup_divergences"}
        sample_stats["tree_depth"] = np.floor(np.log2(sample_stats["n_steps"])).astype(np.int64) + 1
        post_dims = {k: v for k, v in dims.items() if k in posterior}
        tree = arviz_base.from_dict(
            {"posterior": posterior, "sample_stats": sample_stats},
            dims=post_dims,
            coords={k: v for k, v in coords.items() if any(k in d for d in post_dims.values())},
        )
        tree["sample_stats"].attrs["warmup_divergences"] = int(np.sum(stats["warmup_divergences"][i]))
        diagnostics = _unit_diagnostics(diag, i, dims, coords)
        results.append(
            FitResult(
                tree=tree,
                data=data,
                priors=priors,
                structure=structure,
                settings=settings,
                diagnostics=diagnostics,
                compile_s=compile_s,
                sample_s=shares[i],
                seed=seeds[i],
                extensions=int(extensions[i]),
            )
        )
    return results
