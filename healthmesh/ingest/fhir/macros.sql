-- SQL helpers for the mapping. ${salt} is the hub's key material, set per connection.
-- The key is the first 15 hex digits of the MD5 digest. md5_number gives the digest as a
-- little-endian integer: its low 8 bytes, byte-swapped, shifted by one digit, are the same key
-- without building and parsing hex text (a quarter less time per key).
CREATE OR REPLACE TEMP MACRO hm_bswap64(x) AS
    ((x & 255) << 56) | (((x >> 8) & 255) << 48) | (((x >> 16) & 255) << 40) | (((x >> 24) & 255) << 32)
    | (((x >> 32) & 255) << 24) | (((x >> 40) & 255) << 16) | (((x >> 48) & 255) << 8) | (x >> 56);
CREATE OR REPLACE TEMP MACRO hm_key(kind, id) AS
    (hm_bswap64((md5_number(getvariable('hm_salt') || '|' || kind || '|' || id) & 18446744073709551615)::UBIGINT)
     >> 4)::BIGINT;
-- A reference to the id it points at: urn:uuid:X, Type/X, http://server/Type/X/_history/N, or a
-- conditional Type?identifier=system|value (resolved later through hm_identifier_index).
CREATE OR REPLACE TEMP MACRO hm_ref(r) AS CASE
    WHEN r IS NULL THEN NULL
    WHEN starts_with(r, 'urn:uuid:') THEN substr(r, 10)
    WHEN starts_with(r, 'urn:oid:') THEN substr(r, 9)
    WHEN contains(r, '?identifier=') THEN 'identifier:' || split_part(split_part(r, '?identifier=', 2), '|', -1)
    WHEN contains(r, '/_history/') THEN split_part(split_part(r, '/_history/', 1), '/', -1)
    ELSE split_part(r, '/', -1) END;
-- FHIR date / dateTime / instant to a local TIMESTAMP (the wall time as written); NULL when it is
-- not one. The common full forms take a cheap path; partial dates (YYYY, YYYY-MM) are allowed.
CREATE OR REPLACE TEMP MACRO hm_ts(x) AS CASE
    WHEN x IS NULL THEN NULL
    WHEN length(x) = 10 THEN try_cast(x AS TIMESTAMP)
    WHEN length(x) BETWEEN 19 AND 35 AND substr(x, 11, 1) = 'T'
         AND (length(x) = 19 OR substr(x, 20, 1) IN ('Z', '+', '-', '.'))
        THEN try_cast(replace(substr(x, 1, 19), 'T', ' ') AS TIMESTAMP)
    WHEN length(x) = 16 AND substr(x, 11, 1) = 'T' THEN try_cast(replace(x, 'T', ' ') || ':00' AS TIMESTAMP)
    WHEN length(x) = 7 THEN try_cast(x || '-01' AS TIMESTAMP)
    WHEN length(x) = 4 THEN try_cast(x || '-01-01' AS TIMESTAMP)
    ELSE NULL END;
