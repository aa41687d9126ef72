-- The tutorial's metric: base experience per decimetre of height.
select
    pokemon_name,
    base_experience,
    height_dm,
    -- Cast first: the ratio is the point, not an integer quotient.
    cast(base_experience as double) / height_dm as xp_per_height
from {{ ref('stg_pokemon') }}
