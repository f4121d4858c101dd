import pytest

from benchmark.registry import Registry, RegistryError


def test_duplicate_names_are_refused():
    registry: Registry[int] = Registry("thing")
    registry.add("alpha", 1)
    with pytest.raises(RegistryError, match="already registered"):
        registry.add("alpha", 2)
    assert registry.get("alpha") == 1


def test_unknown_name_suggests_close_names_and_lists_all():
    registry: Registry[int] = Registry("backbone")
    registry.add("mgca_vit", 1)
    registry.add("mgca_resnet50", 2)
    with pytest.raises(RegistryError) as error:
        registry.get("mgca_vitt")
    message = str(error.value)
    assert "unknown backbone 'mgca_vitt'" in message
    assert "Did you mean 'mgca_vit'" in message
    assert "mgca_resnet50" in message


def test_decorator_registers_and_returns_the_object():
    registry: Registry[object] = Registry("task")

    @registry.register("probe")
    def probe():
        return 42

    assert registry.get("probe") is probe
    assert registry.names() == ["probe"] and "probe" in registry and len(registry) == 1
