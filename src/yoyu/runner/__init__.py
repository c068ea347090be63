"""One model run, measured the same way in every mode: run, chat, profile A/B, soak.

ModelRun(config)             resolve, plan, sample, load, stream, settle, profile, unload, store
RunConfig / SettlePolicy     what to run and when memory counts as settled (options)
predict(...)                 the plan's figures beside which the measured ones are shown
run_ab / ab_result           alternated A/B of two settings, median and spread, vs noise
run_soak / soak_result       a long conversation and the leak verdict
Watcher / WatchContext       the hook a guard uses to watch a run while the model is resident
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yoyu.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from yoyu.plan.settings import settings_from_mapping
    from yoyu.runner.ab import ABResult, ABRun, Side, ab_result, run_ab, schedule
    from yoyu.runner.options import (
        DEFAULT_SETTINGS,
        RunConfig,
        SettlePolicy,
        settings_from_file,
    )
    from yoyu.runner.prediction import Prediction, engine_settings, predict
    from yoyu.runner.result import Speed, TurnResult
    from yoyu.runner.session import ModelRun
    from yoyu.runner.soak import (
        SoakPoint,
        SoakResult,
        parse_duration,
        run_soak,
        settle_point,
        soak_loop,
        soak_result,
    )
    from yoyu.runner.stats import Difference, Spread, compare_stats, profile_stats, spread_of
    from yoyu.runner.watchers import WatchContext, Watcher
else:  # each submodule is imported when one of its names is first used
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "yoyu.plan.settings": ("settings_from_mapping",),
            "yoyu.runner.ab": ("ABResult", "ABRun", "Side", "ab_result", "run_ab", "schedule"),
            "yoyu.runner.options": (
                "DEFAULT_SETTINGS",
                "RunConfig",
                "SettlePolicy",
                "settings_from_file",
            ),
            "yoyu.runner.prediction": ("Prediction", "engine_settings", "predict"),
            "yoyu.runner.result": ("Speed", "TurnResult"),
            "yoyu.runner.session": ("ModelRun",),
            "yoyu.runner.soak": (
                "SoakPoint",
                "SoakResult",
                "parse_duration",
                "run_soak",
                "settle_point",
                "soak_loop",
                "soak_result",
            ),
            "yoyu.runner.stats": (
                "Difference",
                "Spread",
                "compare_stats",
                "profile_stats",
                "spread_of",
            ),
            "yoyu.runner.watchers": ("WatchContext", "Watcher"),
        },
    )

__all__ = [
    "DEFAULT_SETTINGS",
    "ABResult",
    "ABRun",
    "Difference",
    "ModelRun",
    "Prediction",
    "RunConfig",
    "SettlePolicy",
    "Side",
    "SoakPoint",
    "SoakResult",
    "Speed",
    "Spread",
    "TurnResult",
    "WatchContext",
    "Watcher",
    "ab_result",
    "compare_stats",
    "engine_settings",
    "parse_duration",
    "predict",
    "profile_stats",
    "run_ab",
    "run_soak",
    "schedule",
    "settings_from_file",
    "settings_from_mapping",
    "settle_point",
    "soak_loop",
    "soak_result",
    "spread_of",
]
