-- PokeAPI's units made explicit in the names: height in decimetres, weight in hectograms.
select
    cast(id as integer) as pokemon_id,
    cast(name as varchar) as pokemon_name,
    cast(base_experience as integer) as base_experience,
    cast(height as integer) as height_dm,
    cast(weight as integer) as weight_hg
from {{ source('raw', 'pokemon') }}
