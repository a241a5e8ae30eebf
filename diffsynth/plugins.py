"""Find family plugins (entry-point group `diffsynth.models`) and collect their families.

Import-light: plugins' entry-point modules are expected to be light too, so `models list`
never imports torch. A plugin that fails to import or register (including one that calls
`sys.exit` while importing, declares an option that clashes with a core flag, or registers a
family name another plugin already has) is recorded as broken and reported; the others keep
working.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import pluggy

from diffsynth import hookspecs
from diffsynth.errors import UserError
from diffsynth.spec import FamilySpec

ENTRY_POINT_GROUP = "diffsynth.models"
#: Comma-separated `module` or `module:attribute` registered as plugins too (tests, local work).
EXTRA_PLUGINS_ENV = "DIFFSYNTH_PLUGINS"
#: Set to 1 to print every hook call (pluggy tracing).
TRACE_ENV = "DIFFSYNTH_TRACE_HOOKS"


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that could not be loaded or registered, and why."""

    name: str
    distribution: str
    error: str


@dataclass
class FamilyRegistry:
    """The plugin manager plus every registered family, by name."""

    pm: pluggy.PluginManager
    families: dict[str, FamilySpec] = field(default_factory=dict)
    broken: list[BrokenPlugin] = field(default_factory=list)

    @property
    def hook(self):
        return self.pm.hook

    def implements(self, family: str, hook: str) -> bool:
        """Whether some plugin answers the optional `hook` for `family`: a `Family` subclass that
        overrides its method, or a plain hook implementation (which may answer any family)."""
        from diffsynth.family import Family

        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            plugin = impl.plugin
            if not isinstance(plugin, Family):
                return True
            if plugin.spec.name == family and getattr(type(plugin._impl()), hook) is not getattr(Family, hook):
                return True
        return False

    def load_family_classes(self) -> None:
        """Load every family's class now (a `LazyFamily` imports its heavy modules, torch too): a
        family whose class does not load moves from `families` to `broken`."""
        from diffsynth.errors import PluginError
        from diffsynth.family import Family

        for name, plugin in self.pm.list_name_plugin():
            if isinstance(plugin, Family) and plugin.spec.name in self.families:
                try:
                    plugin._impl()
                except PluginError as exc:
                    spec = self.families.pop(plugin.spec.name)
                    self.broken.append(BrokenPlugin(name, spec.plugin, str(exc)))

    def recognize(self, header) -> list[tuple[str, str]]:
        """(family, component) of every registered family whose detector matches the checkpoint
        `header` (a `CheckpointHeader`)."""
        found = []
        for spec in self.families.values():
            for component in spec.components:
                try:
                    matches = component.detect(header)
                except Exception:  # noqa: BLE001 - a detector written for its own files may trip on others'
                    matches = False
                if matches:
                    found.append((spec.name, component.name))
        return found

    def get(self, name: str) -> FamilySpec:
        """The family called `name` (or an alias); a UserError lists the registered ones."""
        if name in self.families:
            return self.families[name]
        for spec in self.families.values():
            if name in spec.aliases:
                return spec
        known = ", ".join(sorted(self.families)) or "none"
        hint = f"; broken plugins: {', '.join(b.name for b in self.broken)}" if self.broken else ""
        raise UserError(f"unknown model family {name!r}; registered families: {known}{hint}")


def _register_plugin(
    registry: FamilyRegistry, plugin: object, name: str, dist: str, version: str
) -> None:
    added: list[FamilySpec] = []

    def register(spec: FamilySpec) -> None:
        if not isinstance(spec, FamilySpec):
            raise TypeError(f"register() takes a FamilySpec, got {type(spec).__name__}")
        for taken in (*registry.families.values(), *added):
            if spec.name == taken.name or spec.name in taken.aliases:
                raise ValueError(f"family {spec.name!r} is already registered by {taken.plugin or name}")
        check_options(spec)
        spec.plugin, spec.plugin_version = dist, version
        added.append(spec)

    try:
        registry.pm.register(plugin, name=name)
        # call this plugin's implementation only, so each family is attributed to its plugin
        impl = getattr(plugin, "register_families", None)
        if impl is not None:
            impl(register=register)
        registry.pm.check_pending()
        if not added and not registry.pm.get_hookcallers(plugin):
            raise ValueError("registers no family and implements no hook (is the entry point a Family instance?)")
    except BaseException as exc:  # noqa: BLE001 - a broken plugin (even sys.exit) must not break the others
        if isinstance(exc, KeyboardInterrupt):
            raise
        if registry.pm.is_registered(plugin):
            registry.pm.unregister(plugin)
        registry.broken.append(BrokenPlugin(name, dist, f"{type(exc).__name__}: {exc}"))
        return
    for spec in added:
        registry.families[spec.name] = spec


def check_options(spec: FamilySpec) -> None:
    """A family option may not take a core flag's name (it would shadow it in `train`)."""
    from diffsynth.config import cli_fields

    core = {f.name for f in cli_fields()}
    clashes = [o.name for o in spec.options if o.name in core]
    if clashes:
        raise ValueError(f"family {spec.name}: option(s) --{', --'.join(clashes)} clash with core options")


def _import_plugin(reference: str) -> object:
    """`module` or `module:attribute` (the entry-point syntax)."""
    module_name, _, attribute = reference.strip().partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute) if attribute else module


def load_registry(extra_plugins: tuple[object, ...] = (), use_entry_points: bool = True) -> FamilyRegistry:
    """Build the plugin manager: core defaults, entry-point plugins, `$DIFFSYNTH_PLUGINS`,
    then `extra_plugins` (objects or modules, used by tests)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if os.environ.get(TRACE_ENV) == "1":
        pm.trace.root.setwriter(lambda msg: sys.stderr.write(msg))
        pm.enable_tracing()
    registry = FamilyRegistry(pm)

    if use_entry_points:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else "?"
            try:
                plugin = ep.load()
            except BaseException as exc:  # noqa: BLE001 - even sys.exit while importing
                if isinstance(exc, KeyboardInterrupt):
                    raise
                registry.broken.append(BrokenPlugin(ep.name, dist, f"{type(exc).__name__}: {exc}"))
                continue
            _register_plugin(registry, plugin, ep.name, dist, version)

    for mod_name in filter(None, os.environ.get(EXTRA_PLUGINS_ENV, "").split(",")):
        try:
            plugin = _import_plugin(mod_name)
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, KeyboardInterrupt):
                raise
            registry.broken.append(BrokenPlugin(mod_name, mod_name, f"{type(exc).__name__}: {exc}"))
            continue
        _register_plugin(registry, plugin, mod_name, mod_name, "local")

    for plugin in extra_plugins:
        name = getattr(plugin, "__name__", type(plugin).__name__)
        _register_plugin(registry, plugin, name, name, "local")
    return registry
