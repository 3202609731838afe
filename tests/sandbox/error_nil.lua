-- Attack: error(nil): an error without a message must still fail the job
-- with a readable error, not crash the formatter.
-- expect: error(nil)
error(nil)
