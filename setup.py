"""nbdev 2 setup: every setting comes from settings.ini (never edit the package metadata here)."""
from configparser import ConfigParser
import setuptools

cfg = ConfigParser(delimiters=["="])
cfg.read("settings.ini", encoding="utf-8")
cfg = cfg["DEFAULT"]
for key in "version description keywords author author_email".split():
    assert key in cfg, f"settings.ini is missing `{key}`"

licenses = {"apache2": ("Apache Software License 2.0", "OSI Approved :: Apache Software License")}
statuses = ["1 - Planning", "2 - Pre-Alpha", "3 - Alpha", "4 - Beta", "5 - Production/Stable"]
lic = licenses[cfg["license"]]
requirements = cfg.get("requirements", "").split()
dev_requirements = cfg.get("dev_requirements", "").split()
jupyter_requirements = cfg.get("jupyter_requirements", "").split()

setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license=lic[0],
    classifiers=[
        "Development Status :: " + statuses[int(cfg["status"])],
        "Intended Audience :: " + cfg["audience"].title(),
        "License :: " + lic[1],
        "Natural Language :: " + cfg["language"].title(),
        "Programming Language :: Python :: 3",
    ],
    author=cfg["author"],
    author_email=cfg["author_email"],
    keywords=cfg["keywords"],
    packages=setuptools.find_packages(include=["safety_study", "safety_study.*"]),
    include_package_data=True,
    package_data={"safety_study": ["assets/**/*", "data/**/*"]},
    install_requires=requirements,
    extras_require={"test": dev_requirements, "dev": dev_requirements + jupyter_requirements},
    python_requires=">=" + cfg["min_python"],
    zip_safe=False,
    entry_points={
        "console_scripts": cfg["console_scripts"].split(),
        "nbdev": [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"],
    },
)
