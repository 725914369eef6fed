"""agent day rollup: report_agent_days and report_agent_day_reasons (reports/agent_days.py)

Each agent's call figures, seconds in each state and not-ready seconds by reason per
local day of the center's time zone, on PostgreSQL. After upgrading a database that
already holds calls or agent states, or after changing `CALLCENTER_CENTER_TIMEZONE`,
fill them with `callcenter report rebuild`: until then the agent report by day, week or
month reads them and shows nothing for those days.

Revision ID: 0806_agent_day_rollup
Revises: 0805_agent_call_rollup
Create Date: 2026-12-03 11:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0806_agent_day_rollup'
down_revision = '0805_agent_call_rollup'
branch_labels = None
depends_on = None

_FIGURES = (('handled', sa.Integer), ('transfers', sa.Integer), ('talk_n', sa.Integer),
            ('talk_sum', sa.Float), ('wrap_n', sa.Integer), ('wrap_sum', sa.Float),
            ('csat_n', sa.Integer), ('csat_sum', sa.Float), ('hold_sum', sa.Float),
            ('available_s', sa.Float), ('ringing_s', sa.Float), ('on_call_s', sa.Float),
            ('wrap_up_s', sa.Float), ('not_ready_s', sa.Float))


def _day_key() -> list[sa.Column]:
    return [sa.Column('zone', sa.String(length=64), nullable=False),
            sa.Column('day', sa.Date(), nullable=False),
            sa.Column('agent_id', sa.Integer(), nullable=False)]


def upgrade() -> None:
    op.create_table('report_agent_days', *_day_key(),
    *[sa.Column(name, kind(), nullable=False) for name, kind in _FIGURES],
    sa.PrimaryKeyConstraint('zone', 'day', 'agent_id', name=op.f('pk_report_agent_days'))
    )
    op.create_table('report_agent_day_reasons', *_day_key(),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('zone', 'day', 'agent_id', 'reason',
                            name=op.f('pk_report_agent_day_reasons'))
    )


def downgrade() -> None:
    op.drop_table('report_agent_day_reasons')
    op.drop_table('report_agent_days')
