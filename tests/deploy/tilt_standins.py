"""Run the Tiltfile without Tilt: starlark-pyo3 executes it against stand-ins for Tilt's builtins.

Each stand-in has the signature of the Tilt function it replaces (parameter names from Tilt's API
reference and from the helm_resource extension), so a misspelt function or keyword argument fails
here as it would in `tilt up`. Calls are recorded for the tests to inspect. Paths are checked
against the repository, and `helm()` renders the real chart with the helm binary, so the workloads
the Tiltfile names must exist in what the chart produces.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .support import ROOT, missing_tool, parse_manifests, run_helm

TILTFILE = ROOT / "Tiltfile"
TILT_JSON = ROOT / "tilt.json"

_REQUIRED = inspect.Parameter.empty

# name -> [(parameter, default)], in Tilt's order. _REQUIRED marks a parameter without a default.
TILT_BUILTINS: dict[str, list[tuple[str, Any]]] = {
    "read_json": [("path", _REQUIRED), ("default", None)],
    "docker_build": [
        ("ref", _REQUIRED), ("context", _REQUIRED), ("build_args", None), ("dockerfile", "Dockerfile"),
        ("dockerfile_contents", ""), ("live_update", None), ("match_in_env_vars", False), ("ignore", None),
        ("only", None), ("entrypoint", None), ("target", ""), ("ssh", ""), ("network", ""), ("secret", ""),
        ("extra_tag", ""), ("container_args", None), ("cache_from", None), ("pull", False), ("platform", ""),
        ("extra_hosts", None),
    ],
    "sync": [("local_path", _REQUIRED), ("remote_path", _REQUIRED)],
    "run": [("cmd", _REQUIRED), ("trigger", None), ("echo_off", False)],
    "fall_back_on": [("files", _REQUIRED)],
    "initial_sync": [],
    "k8s_yaml": [("yaml", _REQUIRED), ("allow_duplicates", False)],
    "helm": [
        ("pathToChartDir", _REQUIRED), ("name", ""), ("namespace", ""), ("values", None), ("set", None),
        ("kube_version", ""), ("skip_crds", False),
    ],
    "k8s_resource": [
        ("workload", ""), ("new_name", ""), ("port_forwards", None), ("extra_pod_selectors", None),
        ("trigger_mode", None), ("resource_deps", None), ("objects", None), ("auto_init", True),
        ("pod_readiness", ""), ("links", None), ("labels", None), ("discovery_strategy", ""),
    ],
    "port_forward": [("local_port", _REQUIRED), ("container_port", None), ("name", None), ("link_path", None),
                     ("host", None)],
    "link": [("url", _REQUIRED), ("name", None)],
    "local_resource": [
        ("name", _REQUIRED), ("cmd", _REQUIRED), ("deps", None), ("trigger_mode", None), ("resource_deps", None),
        ("ignore", None), ("auto_init", True), ("serve_cmd", ""), ("cmd_bat", ""), ("serve_cmd_bat", ""),
        ("allow_parallel", False), ("links", None), ("labels", None), ("env", None), ("serve_env", None),
        ("readiness_probe", None), ("dir", ""), ("serve_dir", ""),
    ],
    "local": [("command", _REQUIRED), ("quiet", False), ("command_bat", ""), ("echo_off", False), ("env", None),
              ("dir", ""), ("stdin", None)],
    "watch_file": [("file_path", _REQUIRED)],
    "allow_k8s_contexts": [("contexts", _REQUIRED)],
    "version_settings": [("check_updates", True), ("constraint", "")],
    "update_settings": [("max_parallel_updates", 3), ("k8s_upsert_timeout_secs", 30),
                        ("suppress_unused_image_warnings", None), ("k8s_server_side_apply", "auto")],
    "warn": [("msg", _REQUIRED)],
    "fail": [("msg", _REQUIRED)],
}

# The helm_resource extension (load('ext://helm_resource', ...)).
EXTENSIONS: dict[str, dict[str, list[tuple[str, Any]]]] = {
    "ext://helm_resource": {
        "helm_resource": [
            ("name", _REQUIRED), ("chart", _REQUIRED), ("deps", None), ("release_name", ""), ("namespace", None),
            ("image_deps", None), ("image_keys", None), ("flags", None), ("uninstall_flags", None),
            ("image_selector", ""), ("container_selector", ""), ("live_update", None), ("resource_deps", None),
            ("labels", None), ("port_forwards", None), ("auto_init", True), ("pod_readiness", ""),
            ("update_dependencies", False), ("build_dependencies", False), ("links", None),
        ],
        "helm_repo": [("name", _REQUIRED), ("url", _REQUIRED), ("resource_name", ""), ("username", ""),
                      ("password", ""), ("labels", None)],
    },
}


class TiltfileFailed(Exception):
    """The Tiltfile called fail()."""


@dataclass(frozen=True)
class Blob:
    """What helm() returns in Tilt: YAML text, not a path."""

    text: str


@dataclass
class TiltRun:
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    manifests: list[dict[str, Any]] = field(default_factory=list)

    def called(self, name: str) -> list[dict[str, Any]]:
        return [args for fn, args in self.calls if fn == name]

    def resources(self) -> dict[str, dict[str, Any]]:
        """Tilt resources by name: configured workloads, helm_resource and helm_repo resources."""
        out: dict[str, dict[str, Any]] = {}
        for args in self.called("k8s_resource"):
            out[args["new_name"] or args["workload"]] = args
        for args in self.called("helm_resource"):
            out[args["name"]] = args
        for args in self.called("helm_repo"):
            out[args["resource_name"] or args["name"]] = args
        for args in self.called("local_resource"):
            out[args["name"]] = args
        return out


def _check_path(path: Any, what: str) -> None:
    paths = path if isinstance(path, list) else [path]
    for item in paths:
        assert isinstance(item, str), f"{what}: expected a path, got {item!r}"
        assert (ROOT / item).exists(), f"{what}: {item} does not exist in the repository"


class StandIns:
    def __init__(self, settings: Mapping[str, Any] | None = None, *, render: bool = True) -> None:
        self.settings = settings
        self.render = render
        self.run = TiltRun()

    # -- the stand-ins' behaviour beyond recording -------------------------------------------------

    def _read_json(self, args: dict[str, Any]) -> Any:
        _check_path(args["path"], "read_json")
        if args["path"] == TILT_JSON.name and self.settings is not None:
            return json.loads(json.dumps(self.settings))
        return json.loads((ROOT / args["path"]).read_text())

    def _helm(self, args: dict[str, Any]) -> Any:
        import starlark

        _check_path(args["pathToChartDir"], "helm chart")
        for values in args["values"] or []:
            _check_path(values, "helm values")
        text = ""
        if self.render:
            cmd = ["template", args["name"] or "chart", str(ROOT / args["pathToChartDir"])]
            if args["namespace"]:
                cmd += ["--namespace", args["namespace"]]
            for values in args["values"] or []:
                cmd += ["--values", str(ROOT / values)]
            for item in args["set"] or []:
                cmd += ["--set", item]
            proc = run_helm(cmd, check=False)
            if proc.returncode != 0:
                raise TiltfileFailed(f"helm template failed: {proc.stderr.strip()}")
            text = proc.stdout
        return starlark.OpaquePythonObject(Blob(text))

    def _k8s_yaml(self, args: dict[str, Any]) -> None:
        items = args["yaml"] if isinstance(args["yaml"], list) else [args["yaml"]]
        for item in items:
            if isinstance(item, Blob):
                self.run.manifests += parse_manifests(item.text)
            else:
                _check_path(item, "k8s_yaml")
                self.run.manifests += parse_manifests((ROOT / item).read_text())

    def _fail(self, args: dict[str, Any]) -> None:
        raise TiltfileFailed(args["msg"])

    def _live_update_step(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        if name == "sync":
            _check_path(args["local_path"], "sync")
            assert args["remote_path"].startswith("/"), "sync: the container path must be absolute"
        if name == "fall_back_on":
            _check_path(args["files"], "fall_back_on")
        return {"step": name, **args}

    # -- plumbing ------------------------------------------------------------------------------------

    def _callable(self, name: str, params: list[tuple[str, Any]]) -> Callable[..., Any]:
        signature = inspect.Signature([
            inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=d) for p, d in params
        ])
        special: dict[str, Callable[[dict[str, Any]], Any]] = {
            "read_json": self._read_json, "helm": self._helm, "k8s_yaml": self._k8s_yaml, "fail": self._fail,
        }

        def stand_in(*args: Any, **kwargs: Any) -> Any:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{name}(): {exc}") from None
            bound.apply_defaults()
            recorded = dict(bound.arguments)
            self.run.calls.append((name, recorded))
            if name in special:
                return special[name](recorded)
            if name in ("sync", "run", "fall_back_on", "initial_sync"):
                return self._live_update_step(name, recorded)
            if name in ("port_forward", "link"):
                return {"kind": name, **recorded}
            return None

        stand_in.__name__ = name
        return stand_in

    def execute(self, source: str | None = None) -> TiltRun:
        try:
            import starlark
        except ImportError:
            missing_tool("the starlark-pyo3 package is not installed")
        source = TILTFILE.read_text() if source is None else source
        # Tilt's dialect (go.starlark.net with Tilt's options): top-level if/for, load(), def, lambda.
        dialect = starlark.Dialect.extended()
        dialect.enable_top_level_stmt = True
        dialect.enable_load = True
        dialect.enable_f_strings = False
        ast = starlark.parse("Tiltfile", source, dialect)
        glb = starlark.Globals.extended_by([starlark.LibraryExtension.StructType, starlark.LibraryExtension.Print])
        module = starlark.Module()
        for name, params in TILT_BUILTINS.items():
            module.add_callable(name, self._callable(name, params))

        def load(module_id: str) -> Any:
            if module_id not in EXTENSIONS:
                raise ValueError(f"load({module_id!r}): not a known extension")
            ext = starlark.Module()
            for name, params in EXTENSIONS[module_id].items():
                ext.add_callable(name, self._callable(name, params))
            return ext.freeze()

        starlark.eval(module, ast, glb, starlark.FileLoader(load))
        return self.run
