"""Reports: the usage model as one plain dict (`build`) and what changed since a previous one (`diff`)."""
