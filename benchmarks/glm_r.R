# R's svyglm on the data of benchmarks/glm.py (run by it, in its own process).
#
#   Rscript glm_r.R DATA.csv ROWS
#
# Prints one JSON line per step and the coefficients and SEs, as the Python workers do.
# Fits on the first ROWS rows. The peak is reset after reading (/proc/self/clear_refs)
# so the "added" peak is the design's and the fit's.
#   svrepdesign(data=df, repweights="rw[0-9]+", weights=~w, combined.weights=TRUE,
#               type="successive-difference", mse=FALSE)  # scale 4/80
#   svyglm(y ~ x1 + ... + x10, d, family=quasibinomial())

suppressMessages(library(survey))
suppressMessages(library(data.table))

args <- commandArgs(trailingOnly = TRUE)
path <- args[[1]]
rows <- as.integer(args[[2]])

num <- function(x) sprintf("%.17g", x)
emit_step <- function(step, seconds, n) {
  cat(sprintf('{"step": "%s", "seconds": %s, "first": %s, "runs": 1, "n": %d}\n',
    step, num(seconds), num(seconds), n))
  flush(stdout())
}
status <- function(field) {
  line <- grep(paste0("^", field, ":"), readLines("/proc/self/status"), value = TRUE)
  as.numeric(strsplit(trimws(sub(".*:", "", line)), " +")[[1]][[1]]) / 1024
}
timed <- function(step, expr, n) {
  start <- proc.time()[["elapsed"]]
  value <- force(expr)
  emit_step(step, proc.time()[["elapsed"]] - start, n)
  value
}

df <- timed("read", as.data.frame(fread(path, nrows = rows)), 0)
n <- nrow(df)
try(cat("5", file = "/proc/self/clear_refs"), silent = TRUE)
cat(sprintf('{"info": "after_read_mb", "value": %s}\n', num(status("VmRSS"))))

d <- timed("design", svrepdesign(
  data = df, repweights = "rw[0-9]+", weights = ~w, combined.weights = TRUE,
  type = "successive-difference", mse = FALSE
), n)
f <- as.formula(paste("y ~", paste0("x", 1:10, collapse = " + ")))
fit <- timed("fit", svyglm(f, design = d, family = quasibinomial()), n)
cat(sprintf('{"info": "peak_after_read_mb", "value": %s}\n', num(status("VmHWM"))))
cat(sprintf('{"coef": [%s], "se": [%s]}\n',
  paste(num(coef(fit)), collapse = ", "), paste(num(SE(fit)), collapse = ", ")))
