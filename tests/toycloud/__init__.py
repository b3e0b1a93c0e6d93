"""A toy cloud that lives in the tests, to show that a cloud is one folder: registered with
`trustwatch.clouds.register(CloudFolder("toy", entry_point="main.py", package="toycloud"))`,
it gets a baseline section, events, a rule and links without an edit anywhere in core."""
