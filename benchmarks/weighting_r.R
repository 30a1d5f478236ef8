# R's survey::rake on the data of benchmarks/weighting.py (run by it, one process).
#
#   Rscript weighting_r.R DATA.csv MARGINS.csv EPSILON MAXIT WEIGHTS_OUT.bin
#
# Reads the CSV with read.csv(stringsAsFactors=TRUE) -- not timed -- then times, once
# (R takes a minute at 1,000,000 rows):
#   svydesign(ids=~1, weights=~w, data=df)             # w = 1
#   rake(d, list(~v1, ..., ~vK), list(data.frame(v1=levels, Freq=counts), ...),
#        control=list(maxit=MAXIT, epsilon=EPSILON))
# rake's epsilon below 1 is taken as a fraction of the total weight, and compared with
# the largest change between two sweeps of the full cross-table of every raking variable
# (svytable(~v1+...+vK)) -- not with the margin error -- so its achieved margin error is
# measured by the driver from the weights written to WEIGHTS_OUT.bin (float64, row order).
# Prints one JSON line like the Python workers.

suppressMessages(library(survey))

args <- commandArgs(trailingOnly = TRUE)
data_path <- args[[1]]
margins_path <- args[[2]]
epsilon <- as.numeric(args[[3]])
maxit <- as.integer(args[[4]])
out_path <- args[[5]]

df <- read.csv(data_path, stringsAsFactors = TRUE)
df$w <- 1
m <- read.csv(margins_path, colClasses = c("character", "character", "numeric"))
vars <- unique(m$variable)

warned <- character(0)
start <- Sys.time()
d <- svydesign(ids = ~1, weights = ~w, data = df)
population <- lapply(vars, function(v) {
  x <- data.frame(level = m$level[m$variable == v], Freq = m$count[m$variable == v])
  names(x)[1] <- v
  x
})
sample_margins <- lapply(vars, function(v) as.formula(paste0("~", v)))
raked <- withCallingHandlers(
  rake(d, sample_margins, population, control = list(maxit = maxit, epsilon = epsilon)),
  warning = function(w) {
    warned <<- c(warned, conditionMessage(w))
    invokeRestart("muffleWarning")
  }
)
fit <- as.numeric(difftime(Sys.time(), start, units = "secs"))
w <- as.numeric(weights(raked))
writeBin(w, out_path, size = 8)

converged <- !any(grepl("did not converge", warned))
note <- if (length(warned)) gsub('["\\\n]', " ", paste(unique(warned), collapse = "; ")) else ""
cat(sprintf(
  '{"tool": "R", "fit": %.6f, "first": %.6f, "runs": 1, "converged": %s, "note": "%s"}\n',
  fit, fit, if (converged) "true" else "false", trimws(note)
))
