-- Per stock point, the last day of its forecast-vs-actual grid (the later of its last standing
-- forecast's day and its last day with usage; 1970-01-01: no forecast yet). A refresh that
-- brings later usage or a later forecast recomputes the days after it: days with stock
-- movements only (a receipt) past the old end were summarised outside the grid and now fall
-- inside it.
ALTER TABLE sp_extent ADD COLUMN IF NOT EXISTS fva_end Date;
