{#
    Fails for every row whose value lies outside [min_value, max_value] (either bound optional;
    `inclusive: false` excludes the bounds). NULLs pass: pair it with not_null where they must not.
    Written here rather than taken from dbt_utils: packages need `dbt deps`, which needs the internet.
#}
{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true) %}
    {%- if min_value is none and max_value is none -%}
        {{ exceptions.raise_compiler_error("accepted_range on " ~ column_name ~ " needs min_value or max_value") }}
    {%- endif -%}
    {%- set lower_op = ">=" if inclusive else ">" -%}
    {%- set upper_op = "<=" if inclusive else "<" -%}

    select {{ column_name }}
    from {{ model }}
    where {{ column_name }} is not null
      and not (
          true
          {%- if min_value is not none %} and {{ column_name }} {{ lower_op }} {{ min_value }}{% endif %}
          {%- if max_value is not none %} and {{ column_name }} {{ upper_op }} {{ max_value }}{% endif %}
      )
{% endtest %}
