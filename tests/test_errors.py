"""The one exception tree: everything the package raises derives from TikTokError."""

from __future__ import annotations

import importlib
import pickle
import pkgutil

import tiktok_repost_async
from tiktok_repost_async import (
    ExportError,
    HarvestStopped,
    RequestTimeoutError,
    StopReason,
    StoreError,
    TikTokError,
    TransportError,
    WalkStopped,
)


def test_every_exception_class_of_the_package_derives_from_tiktok_error() -> None:
    found = []
    for info in pkgutil.walk_packages(tiktok_repost_async.__path__, "tiktok_repost_async."):
        if ".simulator" in info.name or info.name.endswith(("pytest_plugin", "__main__")):
            continue  # the simulator is a server of its own, not the client's surface
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found.append(value)
                assert issubclass(value, TikTokError), value
    names = {cls.__name__ for cls in found}
    assert {"StoreError", "ExportError", "HarvestStopped", "RequestTimeoutError"} <= names


def test_store_export_and_stop_errors_are_in_the_tree() -> None:
    assert issubclass(StoreError, TikTokError)
    assert issubclass(ExportError, TikTokError)
    assert issubclass(HarvestStopped, WalkStopped)
    assert issubclass(RequestTimeoutError, TransportError)


def test_a_stop_carries_its_reason_as_an_enum_and_pickles() -> None:
    stop = HarvestStopped("quota")
    assert stop.reason is StopReason.QUOTA
    assert stop.reason == "quota"
    again = pickle.loads(pickle.dumps(stop))
    assert type(again) is HarvestStopped
    assert again.reason is StopReason.QUOTA
