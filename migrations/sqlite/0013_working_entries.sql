-- Every signal's decision sums the working entries per symbol, strategy
-- and side. This index holds exactly those rows, in that order, with the two quantities, so the
-- sum is a walk of the index: no lookup into the orders table and no sort, at a few bytes per
-- working entry (status and role are in it only so that the WHERE needs no table lookup either).
-- The queries repeat its WHERE term word for word so the planner can use it.
CREATE INDEX orders_working_entries
    ON orders (symbol, strategy, side, quantity, filled_quantity, status, role)
    WHERE status NOT IN ('filled', 'cancelled', 'rejected', 'expired') AND role = 'entry';
