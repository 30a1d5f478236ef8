# R's survey package on the data of benchmarks/estimate.py (run by it, one process per part).
#
#   Rscript estimate_r.R linear|replicate DATA.csv REPEAT TOPLINE_ROWS CAP_SECONDS
#
# Prints one JSON line per step, as the Python workers do. Steps under 5 s keep the best
# of REPEAT runs; each step is stopped after CAP_SECONDS (setTimeLimit) and reported as
# "timeout". The topline runs on the first TOPLINE_ROWS rows (a separate design built on
# them, not timed) when that is fewer than all rows: its steps are then named "sub_...".
#
# The calls (deff=TRUE: design effects against SRS without replacement; confint() gives
# the normal 95% intervals, R's default for svymean):
#   svydesign(ids=~psu, strata=~stratum, weights=~w, data=df)
#   svrepdesign(data=df, repweights="rw[0-9]+", weights=~w, combined.weights=TRUE,
#               type="successive-difference", mse=TRUE)  # scale 4/80, rscales 1
#   svymean(~y, d, deff=TRUE); svyby(~y, ~banner, d, svymean, deff=TRUE); svymean(~q4, ...)
#   the topline, once per question: svymean(~q1, d, deff=TRUE) and
#     svyby(~q1, ~banner, d, svymean, deff=TRUE), ..., each with confint().
# Questions are factors, so svymean gives the proportion of every level (svyciprop's
# logit interval would mean one call per level: far slower). One formula for all 50
# questions, svymean(~q1+...+q50, d, deff=TRUE), is not an option: for deff= it builds
# the SRS covariance of all 250 level indicators row by row -- "cannot allocate vector of
# size 45.5 Gb" already at 100,000 rows. Without deff= it would not be the same topline.

suppressMessages(library(survey))
options(survey.lonely.psu = "fail")

args <- commandArgs(trailingOnly = TRUE)
part <- args[[1]]
path <- args[[2]]
repeats <- as.integer(args[[3]])
topline_rows <- as.integer(args[[4]])
cap <- as.numeric(args[[5]])
slow <- 5

questions <- paste0("q", 1:50)
check_q <- "q7"

num <- function(x) {
  x <- unname(as.numeric(x))
  if (length(x) != 1 || !is.finite(x)) "null" else sprintf("%.17g", x)
}

emit <- function(step, seconds, first, runs, n, check = NULL) {
  fields <- c(
    sprintf('"step": "%s"', step),
    sprintf('"seconds": %s', if (is.character(seconds)) sprintf('"%s"', seconds) else num(seconds)),
    sprintf('"first": %s', if (is.character(first)) sprintf('"%s"', first) else num(first)),
    sprintf('"runs": %d', runs),
    sprintf('"n": %d', n)
  )
  if (!is.null(check)) {
    parts <- sprintf('"%s": %s', names(check), vapply(check, num, ""))
    fields <- c(fields, sprintf('"check": {%s}', paste(parts, collapse = ", ")))
  }
  cat("{", paste(fields, collapse = ", "), "}\n", sep = "")
  flush(stdout())
}

# run fn (again while under `slow` seconds, up to `repeats` runs); emit the best
measure <- function(step, fn, n, reps = repeats, check = NULL, limit = cap) {
  times <- numeric(0)
  result <- NULL
  repeat {
    start <- proc.time()[["elapsed"]]
    setTimeLimit(elapsed = limit, transient = TRUE)
    result <- tryCatch(fn(), error = function(e) e)
    setTimeLimit(elapsed = Inf)
    took <- proc.time()[["elapsed"]] - start
    if (inherits(result, "error")) {
      msg <- conditionMessage(result)
      if (grepl("time limit", msg)) {
        emit(step, "timeout", "timeout", length(times) + 1, n)
      } else {
        message("step ", step, " failed: ", msg)
        emit(step, "error", "error", length(times) + 1, n)
      }
      return(NULL)
    }
    times <- c(times, took)
    if (length(times) >= reps || took >= slow) break
  }
  emit(step, min(times), times[[1]], length(times), n, if (!is.null(check)) check(result))
  invisible(result)
}

# estimate, SE and deff of one cell: a level (q4a), or a domain's (B01; B12:q7h)
pick <- function(r, name, domain = NULL) {
  cf <- coef(r)
  key <- if (is.null(domain)) name else if (name == "y") domain else paste0(domain, ":", name)
  i <- match(key, names(cf))
  se <- suppressWarnings(sqrt(diag(as.matrix(vcov(r)))))[[i]]
  d <- deff(r)
  de <- if (is.data.frame(d)) {
    d[domain, if (ncol(d) == 1) 1 else paste0("DEff.", name)]
  } else if (is.matrix(d)) {
    diag(d)[[i]]
  } else {
    unname(d)[[i]]
  }
  c(est = cf[[i]], se = se, deff = de)
}

with_ci <- function(r) {
  confint(r)
  r
}

# ---- data -------------------------------------------------------------------------------
header <- names(read.csv(path, nrows = 1))
classes <- ifelse(header %in% c("stratum", "psu"), "integer",
  ifelse(header %in% c("banner", questions), "factor", "numeric")
)
if (part == "linear") classes[grepl("^rw[0-9]+$", header)] <- "NULL"
read_step <- if (part == "linear") "read" else "rep_read"
df <- measure(read_step, function() read.csv(path, colClasses = classes), 0,
  reps = 1, limit = Inf
)
n <- nrow(df)
sub <- topline_rows < n
prefix <- if (sub) "sub_" else ""
top_n <- if (sub) topline_rows else n

q_formula <- lapply(questions, function(q) as.formula(paste("~", q)))

# the topline, one question at a time (see the header for why not one formula)
toplines <- function(design, step_top, step_by) {
  k <- match(check_q, questions)
  measure(step_top, function() {
    lapply(q_formula, function(f) with_ci(svymean(f, design, deff = TRUE)))
  }, top_n, check = function(r) pick(r[[k]], "q7h"))
  measure(step_by, function() {
    lapply(q_formula, function(f) with_ci(svyby(f, ~banner, design, svymean, deff = TRUE)))
  }, top_n, check = function(r) pick(r[[k]], "q7h", "B12"))
}

if (part == "linear") {
  build <- function(data) svydesign(ids = ~psu, strata = ~stratum, weights = ~w, data = data)
  d <- measure("design", function() build(df), n, reps = 1)
  measure("mean", function() with_ci(svymean(~y, d, deff = TRUE)), n,
    check = function(r) pick(r, "y")
  )
  measure("mean_by", function() with_ci(svyby(~y, ~banner, d, svymean, deff = TRUE)), n,
    check = function(r) pick(r, "y", "B01")
  )
  measure("prop", function() with_ci(svymean(~q4, d, deff = TRUE)), n,
    check = function(r) pick(r, "q4a")
  )
  if (sub) {
    rm(d)
    d <- build(df[seq_len(topline_rows), ])
  }
  toplines(d, paste0(prefix, "top"), paste0(prefix, "top_by"))
} else {
  build <- function(data) {
    svrepdesign(
      data = data, repweights = "rw[0-9]+", weights = ~w, combined.weights = TRUE,
      type = "successive-difference", mse = TRUE
    )
  }
  d <- measure("rep_design", function() build(df), n, reps = 1)
  measure("rep_mean", function() with_ci(svymean(~y, d, deff = TRUE)), n,
    check = function(r) pick(r, "y")
  )
  measure("rep_mean_by", function() with_ci(svyby(~y, ~banner, d, svymean, deff = TRUE)), n,
    check = function(r) pick(r, "y", "B01")
  )
  if (sub) {
    rm(d)
    d <- build(df[seq_len(topline_rows), ])
  }
  toplines(d, paste0(prefix, "rep_top"), paste0(prefix, "rep_top_by"))
}
