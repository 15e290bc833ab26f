"""budget.dtype_bytes=1 sizes students for int8 devices: a budget then holds about four times the parameters."""

from nonn.budget import Budget, choose_student
from nonn.config import load_config
from nonn.stages.sizing import budget_of

CIFAR = {"in_shape": (3, 32, 32), "num_classes": 10, "map_size": (8, 8)}


def test_an_int8_budget_picks_a_student_that_fits_only_once_quantized():
    memory = 800_000
    fp32_arch, fp32 = choose_student("wrn", Budget(memory_bytes=memory), num_filters=128, **CIFAR)
    int8_arch, int8 = choose_student("wrn", Budget(memory_bytes=memory, dtype_bytes=1), num_filters=128, **CIFAR)
    assert fp32.params * 4 <= memory and int8.params * 1 <= memory
    assert int8.params * 4 > memory, "the int8 choice would also have fitted as float32: nothing was gained"
    assert int8.params > fp32.params and int8_arch != fp32_arch
    assert int8.weight_bytes == int8.params


def test_the_run_config_carries_dtype_bytes_into_sizing():
    cfg = load_config(overrides={"budget.memory": "800KB", "budget.dtype_bytes": 1})
    budget = budget_of(cfg)
    assert budget.dtype_bytes == 1 and budget.memory_bytes == 800_000
