"""``attnlab compare``'s table: aligned columns, numbers as the docs show them."""

from attnlab.experiments.compare import format_table


def test_the_table_is_aligned_with_no_trailing_blanks():
    rows = [
        {"variant": "gpt", "test_loss": 1.87954, "parameters": 804_096, "steps_per_second": 33.04},
        {"variant": "llama", "test_loss": 1.6529, "parameters": 734_464, "steps_per_second": 3.2},
    ]
    assert format_table(rows).splitlines() == [
        "variant  test_loss  parameters  steps_per_second",
        "-------  ---------  ----------  ----------------",
        "gpt      1.8795     804,096     33.0",
        "llama    1.6529     734,464     3.2000",
    ]
