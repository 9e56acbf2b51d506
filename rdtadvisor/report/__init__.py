"""Reports. Enter: the usage model and the mask checks; leave: one plain dict, the report
contract of ``docs/report.md`` (`build`), and what changed since a previous one (`diff`)."""
